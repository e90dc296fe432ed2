// Starts the gateway as users start it (`node bin/ai-gateway.js --config FILE`, port 0) and captures
// its JSON log lines, so tests talk to a real process over real sockets.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'

const bin = join(import.meta.dirname, '..', 'bin', 'ai-gateway.js')
export const gatewayKey = 'test-gateway-key-0123456789'

type LogLine = Record<string, unknown> & { msg?: string; level?: string }

export interface RunningGateway {
  readonly url: string
  readonly process: ChildProcess
  /** Every stdout line, parsed. */
  readonly logs: LogLine[]
  /** Raw stdout and stderr, for secret scans. */
  output(): string
  stderr(): string
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** POST JSON with the gateway key. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>
  get(path: string, headers?: Record<string, string>): Promise<Response>
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

export function writeConfig(config: object | string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ai-gateway-test-'))
  const file = join(dir, 'config.yaml')
  writeFileSync(file, typeof config === 'string' ? config : stringify(config))
  return file
}

/**
 * Failover settings that make one request's failures invisible to the next (no cooldowns, no circuit,
 * no same-step retries), for tests of single-request behaviour that share one gateway. A provider's
 * explicit retry hint still cools its target down: tests that send one start their own gateway.
 */
const forgetful = {
  rate_limit_cooldown: '1ms',
  rate_limit_cooldown_max: '1ms',
  auth_cooldown: '1ms',
  not_found_cooldown: '1ms',
  circuit_failures: 1_000_000,
  circuit_open: '1ms',
  circuit_open_max: '1ms',
  max_retries: 0,
}

/** A config with the test key, port 0, forgetful failover, and the given providers and routes. */
export function baseConfig(extra: Record<string, unknown>): Record<string, unknown> {
  return {
    api_key: gatewayKey,
    port: 0,
    host: '127.0.0.1',
    default_timeout: '5s',
    failover: forgetful,
    ...extra,
  }
}

function testEnv(extra: Record<string, string> = {}): Record<string, string> {
  // No inherited variables: a test sees exactly the environment it sets up.
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...extra }
}

export function startGateway(
  config: object | string,
  options: { env?: Record<string, string> } = {},
): Promise<RunningGateway> {
  return launch(['--config', writeConfig(config)], options.env)
}

/** Runs `ai-gateway ARGS` until it logs that it listens (on the port the log line names). */
export async function launch(args: string[], env: Record<string, string> = {}): Promise<RunningGateway> {
  const child = spawn(process.execPath, [bin, ...args], {
    env: testEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: LogLine[] = []
  let stdout = ''
  let stderr = ''
  const waiters = new Set<() => void>()
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d
  })
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    stdout += `${line}\n`
    try {
      logs.push(JSON.parse(line) as LogLine)
    } catch {
      logs.push({ msg: 'unparsed', line })
    }
    for (const wake of waiters) wake()
  })

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 10_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = logs.find(match)
        if (found === undefined) return false
        waiters.delete(wake)
        clearTimeout(timer)
        resolve(found)
        return true
      }
      const wake = () => void check()
      const timer = setTimeout(() => {
        waiters.delete(wake)
        reject(new Error(`log line not seen within ${timeoutMs} ms; stderr: ${stderr}; stdout: ${stdout}`))
      }, timeoutMs)
      if (!check()) waiters.add(wake)
      child.once('exit', () => {
        if (!check()) setTimeout(wake, 50)
      })
    })

  const listening = await waitForLog((l) => l.msg === 'listening')
  const url = `http://127.0.0.1:${listening.port}`
  const auth = { authorization: `Bearer ${gatewayKey}` }
  return {
    url,
    process: child,
    logs,
    output: () => stdout + stderr,
    stderr: () => stderr,
    waitForLog,
    post: (path, body, headers = {}) =>
      fetch(url + path, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    get: (path, headers = {}) => fetch(url + path, { headers: { ...auth, ...headers } }),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode
      child.kill(signal)
      const [code] = (await once(child, 'exit')) as [number | null]
      return code
    },
  }
}

/**
 * Runs the CLI to completion (for `validate`, `--help`, bad configs) and returns what it printed. A
 * process still running after `timeoutMs` is killed, and its code is null.
 */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], {
    env: testEnv(options.env),
    cwd: options.cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: options.timeoutMs ?? 30_000,
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => {
    stdout += d
  })
  child.stderr.on('data', (d: Buffer) => {
    stderr += d
  })
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code, stdout, stderr }
}

/** Polls `check` until it holds, failing after `timeoutMs`. */
export async function waitFor(check: () => boolean, what = 'a condition', timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/**
 * A loopback port that is free now, for a process that must be told its port before it starts.
 * Drawn below the kernel's ephemeral range (32768 and up), so the outbound connections of tests
 * running beside this one cannot take it in the meantime, as they can take a port the kernel hands
 * out for `listen(0)`.
 */
export async function unusedPort(): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000)
    const probe = createServer()
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false))
      probe.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (free) {
      await new Promise((resolve) => probe.close(resolve))
      return port
    }
  }
}

/** What a raw client gets for `text` from the server at `url` before it closes the connection. */
export function rawExchangeWith(url: string, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1')
    let out = ''
    socket.on('data', (bytes: Buffer) => {
      out += bytes.toString('latin1')
    })
    socket.on('close', () => resolve(out))
    socket.on('error', () => {})
    socket.write(text)
  })
}
