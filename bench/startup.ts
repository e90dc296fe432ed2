// Start-up time to a healthy /health, and the size of the single executable.
//
//   npm run bench:startup      (builds nothing: run `npm run build` first for the executable)
//
// Each variant is started 10 times on a fixed loopback port and polled every 2 ms; the median is shown.

import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { median, root, writeTempConfig } from './lib.ts'

const port = 18_500 + Math.floor(Math.random() * 1_000)
const config = writeTempConfig(
  `api_key: bench-key-00000000\nport: ${port}\nhost: 127.0.0.1\nproviders: [{ name: p, base_url: "http://127.0.0.1:9/v1" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n`,
)

async function timeToHealthy(command: string, args: string[]): Promise<number> {
  const started = performance.now()
  const child = spawn(command, [...args, '--config', config], { stdio: 'ignore' })
  try {
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`)
        if (res.ok) return performance.now() - started
      } catch {
        // not listening yet
      }
      if (performance.now() - started > 10_000) throw new Error(`${command} did not become healthy`)
      await sleep(2)
    }
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('exit', resolve))
  }
}

const variants: [string, string, string[]][] = [
  ['node bin/ai-gateway.js (TypeScript sources)', process.execPath, [join(root, 'bin', 'ai-gateway.js')]],
  [
    'node dist/ai-gateway.cjs (bundle, as in the container)',
    process.execPath,
    [join(root, 'dist', 'ai-gateway.cjs')],
  ],
  ['dist/ai-gateway (single executable)', join(root, 'dist', 'ai-gateway'), []],
]
for (const [label, command, args] of variants) {
  if (!existsSync(args[0] ?? command)) {
    console.log(`${label}: not built (npm run build)`)
    continue
  }
  const samples: number[] = []
  for (let i = 0; i < 10; i++) samples.push(await timeToHealthy(command, args))
  console.log(
    `${label}: median ${median(samples).toFixed(0)} ms to healthy (min ${Math.min(...samples).toFixed(0)}, max ${Math.max(...samples).toFixed(0)})`,
  )
}
const binary = join(root, 'dist', 'ai-gateway')
if (existsSync(binary))
  console.log(`dist/ai-gateway: ${(statSync(binary).size / 1024 / 1024).toFixed(1)} MiB`)
