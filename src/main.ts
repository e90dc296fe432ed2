// Entry point of the single executable: the same CLI, bundled into one CommonJS file by
// scripts/build-binary.ts (a single executable application runs one script, without top-level await).

import { run } from './cli.ts'

// In a single executable, argv is [binary, binary, ...args].
run(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`ai-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  },
)
