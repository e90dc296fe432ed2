#!/usr/bin/env node
// Entry point. The sources are TypeScript that Node runs as is (type stripping, Node >= 22.18). On an
// older Node, hand over to the Node 24 that `npm ci` installed with the project, if it is there.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

if (process.features.typescript) {
  const { run } = await import('../src/cli.ts')
  process.exitCode = await run(process.argv.slice(2), process.env)
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url))
  if (!existsSync(bundled)) {
    process.stderr.write(
      `ai-gateway needs Node.js >= 22.18 (this is ${process.version}); run \`npm ci\` first to get Node 24.\n`,
    )
    process.exit(1)
  }
  const child = spawn(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  })
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)))
}
