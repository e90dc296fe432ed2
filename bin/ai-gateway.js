#!/usr/bin/env node
// Entry point. The sources are TypeScript that Node runs as is (type stripping, Node >= 22.18).
if (!process.features.typescript) {
  process.stderr.write(
    `ai-gateway needs Node.js >= 22.18 (this is ${process.version}); run it through npm, which brings Node 24.\n`,
  )
  process.exit(1)
}
const { run } = await import('../src/cli.ts')
process.exitCode = await run(process.argv.slice(2), process.env)
