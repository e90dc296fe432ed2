// Start-up time to a healthy /health, and the size of the single executable.
//
//   npm run bench:startup      (builds nothing: run `npm run build` first for the executable)
//
// Each variant is started 10 times on a fixed loopback port and polled every 2 ms; the median is shown.

import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { median, root, timeToHealthy, writeTempConfig } from './lib.ts'

const port = 18_500 + Math.floor(Math.random() * 1_000)
const config = writeTempConfig(
  `api_key: bench-key-00000000\nport: ${port}\nhost: 127.0.0.1\nproviders: [{ name: p, base_url: "http://127.0.0.1:9/v1" }]\nroutes: [{ name: r, steps: [{ provider: p, model: m }] }]\n`,
)

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
  for (let i = 0; i < 10; i++) samples.push(await timeToHealthy(command, [...args, '--config', config], port))
  console.log(
    `${label}: median ${median(samples).toFixed(0)} ms to healthy (min ${Math.min(...samples).toFixed(0)}, max ${Math.max(...samples).toFixed(0)})`,
  )
}
const binary = join(root, 'dist', 'ai-gateway')
if (existsSync(binary))
  console.log(`dist/ai-gateway: ${(statSync(binary).size / 1024 / 1024).toFixed(1)} MiB`)
