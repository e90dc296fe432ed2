// The command line: arguments, commands, signals and exit codes.

import { once } from 'node:events'
import { readFileSync, statSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { type Config, ConfigError, findConfigPath, loadConfig } from './config.ts'
import { startDemo } from './demo.ts'
import { createGateway, type Gateway, version } from './gateway.ts'

type Env = Readonly<Record<string, string | undefined>>

const usage = `ai-gateway ${version}: an OpenAI-compatible gateway that tries a route's providers in order.

Usage:
  ai-gateway [--config FILE]             run the gateway
  ai-gateway validate [--config FILE]    check a config file and print every problem found
  ai-gateway demo                        run on a built-in demo setup (fake providers, no keys needed)

Options:
  -c, --config FILE   config file (default: $AI_GATEWAY_CONFIG, ./config.yaml, /etc/ai-gateway/config.yaml)
  -h, --help          show this help
  -v, --version       print the version

Exit codes: 0 success, 1 invalid config or failed start, 2 bad command line.
`

/** Runs one command; resolves with the process exit code once it is done (for `serve`, at shutdown). */
export async function run(argv: string[], env: Env): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (err) {
    process.stderr.write(`ai-gateway: ${(err as Error).message}\n\n${usage}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) return print(usage)
  if (values.version === true) return print(`${version}\n`)
  const [command = 'serve', ...extra] = positionals
  if (extra.length > 0 || !['serve', 'validate', 'demo'].includes(command)) {
    process.stderr.write(`ai-gateway: unknown command "${positionals.join(' ')}"\n\n${usage}`)
    return 2
  }
  if (command === 'demo') return serve(await startDemo(env))

  let config: Config
  try {
    config = loadConfig(findConfigPath(values.config, env), env)
  } catch (err) {
    process.stderr.write(`ai-gateway: ${describeLoadFailure(err)}\n`)
    return 1
  }
  if (command === 'validate')
    return print(
      `${config.source}: OK (${config.providers.length} providers, ${config.routes.length} routes)\n`,
    )
  const gateway = await createGateway(config)
  warnIfWorldReadable(gateway, config)
  return serve({ gateway })
}

/**
 * A ConfigError never quotes a value. Anything else reaching here is a bug, and its message may quote
 * the config's text (a key among it), so only its kind and stack frames are printed.
 */
function describeLoadFailure(err: unknown): string {
  if (err instanceof ConfigError) return err.message
  const frames = String((err as Error | undefined)?.stack ?? '')
    .split('\n')
    .filter((line) => line.startsWith('    at '))
  return [
    `cannot load the config: ${(err as Error | undefined)?.name ?? typeof err} (a bug)`,
    ...frames,
  ].join('\n')
}

/**
 * The config holds (or points at) keys; other users on the machine should not be able to read it. The
 * chmod 600 advice is for a file the gateway could still read then: its own, or any when it runs as
 * root. A file it reads as another user (config.yaml mounted into the container, owned on the host)
 * must stay readable by it, so there only keys written into the file itself are worth a warning.
 */
function warnIfWorldReadable(gateway: Gateway, config: Config): void {
  const stat = statSync(config.source, { throwIfNoEntry: false })
  if (stat === undefined || (stat.mode & 0o004) === 0) return
  const fields = { config: config.source, mode: (stat.mode & 0o777).toString(8) }
  const uid = process.getuid?.()
  if (uid === undefined || uid === 0 || uid === stat.uid) {
    gateway.logger.warn(fields, 'config file is readable by other users (chmod 600 it)')
  } else if (holdsSecret(config.source, config.secrets)) {
    gateway.logger.warn(
      fields,
      'config file with keys in it is readable by other users (reference them as ${VAR} instead)',
    )
  }
}

function holdsSecret(path: string, secrets: readonly string[]): boolean {
  try {
    const text = readFileSync(path, 'utf8')
    return secrets.some((secret) => text.includes(secret))
  } catch {
    return false // gone or unreadable since it was loaded: nothing to warn about
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  })
}

function print(text: string): number {
  process.stdout.write(text)
  return 0
}

/**
 * Start-up (reading and validating the config, setting up the modules) leaves garbage behind and the
 * young generation grown, and serving needs neither. One full, compacting collection before the first
 * connection returns that memory to the system. `gc` is there when Node runs with --expose-gc, as
 * the executable and the container do.
 */
function compactHeap(): void {
  globalThis.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' })
}

/**
 * Runs until SIGTERM, SIGINT or SIGHUP, then stops gracefully. A second signal exits at once. There is
 * nothing to reload: a hang-up (the terminal of a foreground run closing) drains and flushes the logs,
 * where Node's default would end the process mid-request.
 */
async function serve(started: { gateway: Gateway; cleanup?: () => Promise<void> }): Promise<number> {
  const { gateway } = started
  compactHeap()
  try {
    await gateway.start()
  } catch (err) {
    gateway.logger.fatal({ err }, 'failed to start')
    await gateway.abandon()
    await started.cleanup?.()
    return 1
  }
  const signal = await Promise.race([
    once(process, 'SIGTERM').then(() => 'SIGTERM'),
    once(process, 'SIGINT').then(() => 'SIGINT'),
    once(process, 'SIGHUP').then(() => 'SIGHUP'),
  ])
  const force = () => process.exit(1)
  process.once('SIGTERM', force).once('SIGINT', force).once('SIGHUP', force)
  gateway.logger.info({ signal }, 'received stop signal')
  await gateway.stop()
  await started.cleanup?.()
  // Lingering keep-alive timers must not hold the process once the gateway says it stopped.
  process.exit(0)
}
