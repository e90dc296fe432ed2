// Builds `dist/ai-gateway`: one self-contained Linux executable (a Node.js single executable
// application) that runs without Node installed. Steps: bundle the app into one CommonJS file with
// esbuild, turn it into a SEA blob, copy the project's Node 24 binary, inject the blob with postject.
//
//   node scripts/build-binary.ts                (what `./install.sh build` and `npm run build` run)
//   node scripts/build-binary.ts --bundle-only  (just dist/ai-gateway.cjs, for the container image)

import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { build, type Plugin } from 'esbuild'

const root = join(import.meta.dirname, '..')
const dist = join(root, 'dist')
const bundle = join(dist, 'ai-gateway.cjs')
const blob = join(dist, 'ai-gateway.blob')
const binary = join(dist, 'ai-gateway')
// The Node binary that `npm ci` installed with the project, not whatever `node` the machine has.
const nodeBinary = join(root, 'node_modules', 'node', 'bin', 'node')

/**
 * undici loads its HTTP/2 client, and with it `node:http2` and `node:tls`, when its HTTP/1 client
 * loads; yet a connection only speaks HTTP/2 when TLS negotiates it. Loaded on the first such
 * connection instead, a gateway whose providers speak plain HTTP never pays for the two modules: 5 MiB
 * of RSS. The build fails if undici's line changes, so the patch cannot silently stop applying.
 */
const lazyHttp2: Plugin = {
  name: 'lazy-undici-http2',
  setup(build) {
    build.onLoad({ filter: /[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client\.js$/ }, ({ path }) => {
      const eager = "const connectH2 = require('./client-h2.js')"
      const source = readFileSync(path, 'utf8')
      if (!source.includes(eager)) throw new Error(`${path} no longer has: ${eager}`)
      const lazy =
        "let h2Client; const connectH2 = (client, socket) => (h2Client ??= require('./client-h2.js'))(client, socket)"
      return { contents: source.replace(eager, lazy), loader: 'js' }
    })
  },
}

const started = performance.now()
mkdirSync(dist, { recursive: true })
await build({
  entryPoints: [join(root, 'src', 'main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: 'none',
  // undici keeps its experimental HTTP/1 parser (Milo, two inlined WebAssembly builds) out of bundles
  // that define this, as Node's own bundle of undici does: 170 KiB of source the gateway never runs.
  define: { esbuildDetection: 'true' },
  plugins: [lazyHttp2],
  logLevel: 'warning',
})
if (process.argv.includes('--bundle-only')) {
  console.log(`built ${bundle}`)
  process.exit(0)
}
// V8 flags, measured in BENCHMARKS.md. The young generation grows to 64 MiB semi-spaces under load; a
// proxy's garbage dies young and small, so 8 MiB is enough (peak RSS 124 -> 111 MiB for 1.5 µs more
// scavenging per request). Optimizing compiles run on the main thread: on background threads each
// left its compile memory in a malloc arena of its own, 20 MiB of peak RSS on a 2-core machine. And no
// Maglev: with compiles on the main thread, the mid tier cost 5-10% of the CPU per request and 5 MiB
// of peak RSS; hot code goes from the baseline tier straight to TurboFan. `gc` is exposed for the one
// compaction after start-up (cli.ts). The container's `node` command line passes the same flags.
const v8Flags = ['--max-semi-space-size=8', '--no-concurrent-recompilation', '--no-maglev', '--expose-gc']
const seaConfig = join(dist, 'sea-config.json')
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: bundle,
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    execArgv: v8Flags,
  }),
)
// The code cache is made under the same flags: V8 rejects a cache made under others (--no-maglev among
// them), and compiling the bundle afresh at start costs 3 MiB of idle RSS.
execFileSync(nodeBinary, [...v8Flags, '--experimental-sea-config', seaConfig], { stdio: 'inherit' })
// postject writes its output in one piece, which leaves it in the page cache as large folios: run
// from there, the executable maps 17 MiB more of itself than the same bytes copied (as install.sh
// copies them). The final file is a copy, so what is measured here is what gets installed.
const injected = `${binary}.tmp`
copyFileSync(nodeBinary, injected)
execFileSync(
  process.execPath,
  [
    join(root, 'node_modules', 'postject', 'dist', 'cli.js'),
    injected,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  ],
  { stdio: ['ignore', 'ignore', 'inherit'] },
)
// Copied beside the target and renamed over it: a running gateway keeps its old file, where writing
// into that file would fail with ETXTBSY.
copyFileSync(injected, `${binary}.new`)
renameSync(`${binary}.new`, binary)
rmSync(injected)
const mb = (path: string) => (statSync(path).size / 1024 / 1024).toFixed(1)
console.log(
  `built ${binary}: ${mb(binary)} MiB (bundle ${mb(bundle)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
)
