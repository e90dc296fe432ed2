// Shipping: install.sh (lint, build, install, install-service, deploy, deploy-docker), the single
// executable without Node, the systemd unit, and the container files. Nothing touches the real system:
// paths go under a temporary root (DESTDIR), and ssh, scp, systemctl and docker are stand-ins that
// run the "remote" side in a sandbox on this machine.

import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createSecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { validate } from 'dockerfile-utils'
import { stringify } from 'yaml'
import { gatewayKey, runCli, unusedPort } from './gateway-process.ts'
import { MockUpstream, ok } from './mock-upstream.ts'

const root = join(import.meta.dirname, '..')
const installer = join(root, 'install.sh')
const binary = join(root, 'dist', 'ai-gateway')
const nodeBin = join(root, 'node_modules', '.bin')

let mock: MockUpstream
before(async () => {
  mock = await MockUpstream.start()
  mock.always('p', ok('from the binary'))
})
after(async () => {
  await mock.close()
  // Sandboxes hold copies of the 120 MiB executable: left behind, a few runs fill the disk.
  for (const dir of made) rmSync(dir, { recursive: true, force: true })
})

const made: string[] = []

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}

function sh(args: string[], env: Record<string, string> = {}, cwd = root) {
  const result = spawnSync('bash', [installer, ...args], {
    cwd,
    env: { PATH: `${nodeBin}:${process.env.PATH}`, HOME: process.env.HOME ?? '/tmp', ...env },
    encoding: 'utf8',
  })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

function configYaml(port = 0): string {
  return stringify({
    api_key: '${GATEWAY_API_KEY}',
    port,
    host: '127.0.0.1',
    providers: [{ name: 'p', api_key: '${PROVIDER_KEY}', base_url: mock.url('p') }],
    routes: [{ name: 'r', steps: [{ provider: 'p', model: 'm' }] }],
  })
}

/** A temporary root with copies of the account files, so useradd --prefix works inside it. */
function sandboxRoot(): string {
  const dir = tempDir('ai-gateway-root-')
  mkdirSync(join(dir, 'etc'))
  for (const file of ['passwd', 'group', 'shadow', 'gshadow']) {
    if (existsSync(`/etc/${file}`)) copyFileSync(`/etc/${file}`, join(dir, 'etc', file))
  }
  return dir
}

function sourceDir(env: string): string {
  const dir = tempDir('ai-gateway-src-')
  writeFileSync(join(dir, 'config.yaml'), configYaml())
  writeFileSync(join(dir, '.env'), env)
  return dir
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8)

describe('install.sh', () => {
  test('is shellcheck-clean', () => {
    const result = spawnSync('shellcheck', [installer], { encoding: 'utf8' })
    assert.equal(result.status, 0, result.stdout + result.stderr)
  })

  test('--help lists every command; a bad command or missing prerequisite fails clearly', () => {
    const help = sh(['--help'])
    assert.equal(help.code, 0)
    for (const command of ['build', 'install', 'install-service', 'deploy', 'deploy-docker'])
      assert.match(help.stdout, new RegExp(`\\b${command}\\b`))
    // Every setting the README's Deploy section names, so `help` is the list it promises.
    for (const setting of [
      'SSH_HOST',
      'SSH_USER',
      'SSH_PORT',
      'SSH_KEY',
      'DOMAIN',
      'CERT_RESOLVER',
      'DESTDIR',
      'SOURCE_DIR',
      'REMOTE_DIR',
      'BINARY',
      'BIN_DIR',
      'CONF_DIR',
      'UNIT_DIR',
      'SERVICE_USER',
    ])
      assert.match(help.stdout, new RegExp(`\\b${setting}\\b`))
    const bad = sh(['frobnicate'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /unknown command: frobnicate/)
    const noHost = sh(['deploy'], { SOURCE_DIR: sourceDir(''), BINARY: '/bin/true' })
    assert.notEqual(noHost.code, 0)
    assert.match(noHost.stderr, /SSH_HOST is required/)
    const noBinary = sh(['install'], { BINARY: '/nonexistent/ai-gateway' })
    assert.notEqual(noBinary.code, 0)
    assert.match(noBinary.stderr, /run \.\/install\.sh build first/)
  })

  test(".env settings stay in the script: the build's npm never sees the service's variables", () => {
    // NODE_ENV=production, a common line in a Node service's .env, makes `npm ci` leave out the
    // devDependencies the build needs (Node 24 and esbuild among them); keys have no business there either.
    const source = sourceDir('NODE_ENV=production\nGATEWAY_API_KEY=gw-secret\nDOMAIN=llm.example.com\n')
    const shims = tempDir('npm-')
    const seen = join(shims, 'env.txt')
    writeFileSync(join(shims, 'npm'), `#!/bin/sh\nenv > '${seen}'\n`)
    chmodSync(join(shims, 'npm'), 0o755)
    const result = sh(['build'], { PATH: `${shims}:${nodeBin}:${process.env.PATH}`, SOURCE_DIR: source })
    assert.equal(result.code, 0, result.stderr)
    const env = readFileSync(seen, 'utf8')
    assert.ok(!/^(NODE_ENV|GATEWAY_API_KEY|DOMAIN)=/m.test(env), env)
  })
})

describe('the single executable', () => {
  test('install.sh build makes one file that serves without node on its PATH', async () => {
    const built = sh(['build'])
    assert.equal(built.code, 0, built.stderr)
    assert.ok(statSync(binary).size > 10 * 1024 * 1024)
    const emptyPath = tempDir('empty-path-')
    assert.notEqual(spawnSync('/bin/sh', ['-c', 'command -v node'], { env: { PATH: emptyPath } }).status, 0)
    const child = spawnBinary(
      configYaml(),
      { PATH: emptyPath, GATEWAY_API_KEY: gatewayKey, PROVIDER_KEY: 'sk-binary-provider' },
      'pipe',
    )
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    try {
      const port = await listeningPort(child)
      const health = await fetch(`http://127.0.0.1:${port}/health`)
      assert.deepEqual(await health.json(), { status: 'healthy' })
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'r', messages: [{ role: 'user', content: 'hi' }] }),
      })
      assert.equal(res.status, 200)
      assert.match(await res.text(), /from the binary/)
    } finally {
      child.kill('SIGTERM')
      const [code] = await once(child, 'exit')
      assert.equal(code, 0, 'graceful stop on SIGTERM')
    }
    // A warning here would be V8 rejecting the code cache built into the file, say, or Node's own.
    assert.equal(stderr, '')
  })

  // The executable loads undici's HTTP/2 client only when a connection negotiates HTTP/2 (see
  // scripts/build-binary.ts), and prom-client module by module (see metrics.ts).
  test('speaks HTTP/2 to a TLS provider that offers it, and serves /metrics', async () => {
    assert.ok(existsSync(binary), 'built by the test above')
    const provider = await startTlsProvider()
    const config = stringify({
      api_key: gatewayKey,
      port: 0,
      host: '127.0.0.1',
      providers: [{ name: 'tls', base_url: `https://127.0.0.1:${provider.port}/v1` }],
      routes: [{ name: 'r', steps: [{ provider: 'tls', model: 'm' }] }],
    })
    const child = spawnBinary(config, { NODE_EXTRA_CA_CERTS: provider.cert }, 'inherit')
    try {
      const port = await listeningPort(child)
      const ask = (stream: boolean) =>
        fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gatewayKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'r', stream, messages: [{ role: 'user', content: 'hi' }] }),
        })
      const whole = await ask(false)
      assert.equal(whole.status, 200)
      assert.match(await whole.text(), /over 2\.0/)
      const streamed = await ask(true)
      assert.equal(streamed.status, 200)
      const events = await streamed.text()
      assert.match(events, /"over "[\s\S]*"2\.0"[\s\S]*\[DONE\]/)
      assert.deepEqual(provider.versions, ['2.0', '2.0'])
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`, {
        headers: { authorization: `Bearer ${gatewayKey}` },
      })
      assert.equal(metrics.status, 200)
      const text = await metrics.text()
      assert.match(text, /^ai_gateway_requests_total\{route="r",status="200"\} 2$/m)
      assert.match(text, /^ai_gateway_process_resident_memory_bytes \d+/m)
    } finally {
      child.kill('SIGTERM')
      await once(child, 'exit')
      provider.close()
    }
  })
})

/** The built executable on `configText`, with only `env` for its environment. */
function spawnBinary(
  configText: string,
  env: Record<string, string>,
  stderr: 'pipe' | 'inherit',
): ChildProcess {
  const config = join(tempDir('ai-gateway-bin-'), 'config.yaml')
  writeFileSync(config, configText)
  return spawn(binary, ['--config', config], { env, stdio: ['ignore', 'pipe', stderr] })
}

/** A TLS provider that offers HTTP/2 (and HTTP/1.1), with a certificate for 127.0.0.1 made for the test. */
async function startTlsProvider() {
  const dir = tempDir('ai-gateway-tls-')
  const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  )
  const versions: string[] = []
  const server = createSecureServer(
    { key: readFileSync(key), cert: readFileSync(cert), allowHTTP1: true },
    (req, res) => {
      versions.push(req.httpVersion)
      let body = ''
      req.on('data', (chunk: Buffer) => {
        body += chunk
      })
      req.on('end', () => {
        if ((JSON.parse(body) as { stream?: boolean }).stream !== true) {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(
            JSON.stringify({
              id: 'c',
              object: 'chat.completion',
              model: 'm',
              choices: [
                {
                  index: 0,
                  message: { role: 'assistant', content: `over ${req.httpVersion}` },
                  finish_reason: 'stop',
                },
              ],
            }),
          )
          return
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        for (const content of ['over ', req.httpVersion])
          res.write(
            `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`,
          )
        res.end('data: [DONE]\n\n')
      })
    },
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { cert, versions, port: (server.address() as AddressInfo).port, close: () => server.close() }
}

async function listeningPort(child: ChildProcess): Promise<number> {
  let out = ''
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    out += chunk
    const match = /"port":(\d+),[^\n]*"msg":"listening"/.exec(out)
    if (match !== null) {
      child.stdout?.resume()
      return Number(match[1])
    }
  }
  throw new Error(`no listening line: ${out}`)
}

describe('install and install-service into a temporary root', () => {
  test('files land with the right owners and modes, the unit verifies, re-runs keep the config', () => {
    const dest = sandboxRoot()
    const source = sourceDir('GATEWAY_API_KEY=abc\n')
    const fakeBinary = join(tempDir('bin-'), 'ai-gateway')
    writeFileSync(fakeBinary, '#!/bin/sh\nexit 0\n')
    chmodSync(fakeBinary, 0o755)
    const env = { DESTDIR: dest, SOURCE_DIR: source, BINARY: fakeBinary }
    assert.equal(sh(['install'], env).code, 0)
    assert.equal(mode(join(dest, 'usr/local/bin/ai-gateway')), '755')
    const first = sh(['install-service'], env)
    assert.equal(first.code, 0, first.stderr)

    const passwd = readFileSync(join(dest, 'etc/passwd'), 'utf8')
    const entry = passwd.split('\n').find((line) => line.startsWith('ai-gateway:'))
    assert.ok(entry, 'the system user was created in the temporary root')
    assert.match(entry, /:\/usr\/sbin\/nologin$/)
    const uid = Number(entry.split(':')[2])
    assert.ok(!readFileSync('/etc/passwd', 'utf8').includes('\nai-gateway:'), 'the real system is untouched')

    const confDir = join(dest, 'etc/ai-gateway')
    assert.equal(mode(confDir), '750')
    for (const file of ['config.yaml', '.env']) {
      assert.equal(mode(join(confDir, file)), '600', file)
      assert.equal(statSync(join(confDir, file)).uid, uid, file)
    }
    const unit = join(dest, 'etc/systemd/system/ai-gateway.service')
    assert.equal(mode(unit), '644')
    const text = readFileSync(unit, 'utf8')
    for (const line of [
      'User=ai-gateway',
      'EnvironmentFile=-/etc/ai-gateway/.env',
      'WorkingDirectory=/etc/ai-gateway',
      'Restart=on-failure',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'CapabilityBoundingSet=',
    ]) {
      assert.ok(text.split('\n').includes(line), line)
    }

    verifyUnit(dest)

    // Idempotent: a second run keeps the edited config; --force replaces it.
    writeFileSync(join(confDir, 'config.yaml'), 'edited on the server')
    const again = sh(['install-service'], env)
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stderr, /keeping existing/)
    assert.equal(readFileSync(join(confDir, 'config.yaml'), 'utf8'), 'edited on the server')
    assert.equal(passwd, readFileSync(join(dest, 'etc/passwd'), 'utf8'), 'no second user')
    assert.equal(sh(['install-service', '--force'], env).code, 0)
    assert.notEqual(readFileSync(join(confDir, 'config.yaml'), 'utf8'), 'edited on the server')
  })
})

test('the installed unit runs what install and install-service put where BIN_DIR, CONF_DIR and SERVICE_USER say', () => {
  const dest = sandboxRoot()
  const source = sourceDir('GATEWAY_API_KEY=abc\n')
  const fakeBinary = join(tempDir('bin-'), 'ai-gateway')
  writeFileSync(fakeBinary, '#!/bin/sh\nexit 0\n')
  chmodSync(fakeBinary, 0o755)
  const env = {
    DESTDIR: dest,
    SOURCE_DIR: source,
    BINARY: fakeBinary,
    BIN_DIR: '/opt/gw/bin',
    CONF_DIR: '/srv/gw',
    SERVICE_USER: 'gw',
  }
  assert.equal(sh(['install'], env).code, 0)
  const result = sh(['install-service'], env)
  assert.equal(result.code, 0, result.stderr)
  assert.ok(existsSync(join(dest, 'opt/gw/bin/ai-gateway')))
  assert.ok(existsSync(join(dest, 'srv/gw/config.yaml')))
  const lines = readFileSync(join(dest, 'etc/systemd/system/ai-gateway.service'), 'utf8').split('\n')
  for (const line of [
    'User=gw',
    'Group=gw',
    'WorkingDirectory=/srv/gw',
    'EnvironmentFile=-/srv/gw/.env',
    'ExecStart=/opt/gw/bin/ai-gateway --config /srv/gw/config.yaml',
  ]) {
    assert.ok(lines.includes(line), line)
  }
  // systemd-analyze verify checks that ExecStart's program is there.
  verifyUnit(dest)
})

test('install-service writes .env as systemd reads it: without the export a shell or docker compose accepts', () => {
  const dest = sandboxRoot()
  // systemd's EnvironmentFile= ignores `export NAME=value` ("Ignoring invalid environment assignment").
  const source = sourceDir(
    'export GATEWAY_API_KEY=abc\n  export PROVIDER_KEY="sk-1 2"\nPORT=8081\n# export OLD=1\n',
  )
  const env = { DESTDIR: dest, SOURCE_DIR: source }
  const result = sh(['install-service'], env)
  assert.equal(result.code, 0, result.stderr)
  const installed = join(dest, 'etc/ai-gateway/.env')
  assert.equal(
    readFileSync(installed, 'utf8'),
    'GATEWAY_API_KEY=abc\n  PROVIDER_KEY="sk-1 2"\nPORT=8081\n# export OLD=1\n',
  )
  assert.equal(mode(installed), '600')
  const entry = readFileSync(join(dest, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((line) => line.startsWith('ai-gateway:'))
  assert.equal(statSync(installed).uid, Number(entry?.split(':')[2]))
  assert.equal(
    readFileSync(join(dest, 'etc/ai-gateway/config.yaml'), 'utf8'),
    configYaml(),
    'the config as it is',
  )
})

/**
 * `systemd-analyze verify` of the unit installed under `dest`, in that root (with the system's own
 * units copied in, which it needs to resolve targets): no error, no warning.
 */
function verifyUnit(dest: string): void {
  mkdirSync(join(dest, 'usr/lib/systemd'), { recursive: true })
  execFileSync('cp', ['-a', '/usr/lib/systemd/system', join(dest, 'usr/lib/systemd/')])
  const verify = spawnSync('systemd-analyze', ['verify', `--root=${dest}`, 'ai-gateway.service'], {
    encoding: 'utf8',
  })
  assert.equal(verify.status, 0, verify.stderr)
  assert.equal(verify.stderr.trim(), '', verify.stderr)
}

/**
 * Stand-ins for the remote machine: ssh runs the command in a shell here, with DESTDIR pointing at
 * the sandbox; scp copies into the sandbox; systemctl records and, on restart, starts the installed
 * binary for real; docker records and reports the container healthy on the second look; sudo runs
 * the command as given.
 */
function shims(sandbox: string): { dir: string; log: string } {
  const dir = tempDir('shims-')
  const log = join(dir, 'calls.log')
  const write = (name: string, body: string) => {
    writeFileSync(
      join(dir, name),
      `#!/usr/bin/env bash\nset -euo pipefail\necho "${name} $*" >> '${log}'\n${body}\n`,
    )
    chmodSync(join(dir, name), 0o755)
  }
  // ssh [-p N] [-o X]... [-i KEY] user@host COMMAND
  // Like a real ssh, the remote command sees none of this side's environment.
  write(
    'ssh',
    `while [[ "$1" == -* ]]; do shift 2; done; shift; exec env -i PATH="$PATH" HOME=/tmp DESTDIR='${sandbox}/root' bash -c "$*"`,
  )
  // scp [-P N] [-o X]... [-i KEY] -r SRC user@host:DEST
  // Like scp without -p, an existing directory keeps its mode (cp -a would give it the stage's 700).
  write(
    'scp',
    'args=(); while [[ $# -gt 0 ]]; do case "$1" in -r) shift ;; -*) shift 2 ;; *) args+=("$1"); shift ;; esac; done\ncp -R "${args[0]}" "${args[1]#*:}"',
  )
  write(
    'systemctl',
    `if [[ "$1" == restart ]]; then
  root='${sandbox}/root'
  [[ -f "$root/run.pid" ]] && kill "$(cat "$root/run.pid")" 2>/dev/null || true
  set -a; source "$root/etc/ai-gateway/.env"; set +a
  nohup "$root/usr/local/bin/ai-gateway" --config "$root/etc/ai-gateway/config.yaml" > "$root/service.log" 2>&1 &
  echo $! > "$root/run.pid"
fi`,
  )
  write('journalctl', `cat "${sandbox}/root/service.log" || true`)
  write(
    'docker',
    `if [[ "$1" == inspect ]]; then n=$(grep -c '^docker inspect' '${log}'); [[ $n -ge 2 ]] && echo healthy || echo starting; fi`,
  )
  write('curl', `echo "curl $*" >> '${log}'; exec /usr/bin/curl "$@"`)
  write('sudo', 'exec "$@"')
  // The SSH user exists on the remote machine only.
  write('chown', 'true')
  return { dir, log }
}

/** A sandbox for the remote side, with its own copies of the account files under root/etc. */
function remoteSandbox(): string {
  const sandbox = sandboxRoot()
  mkdirSync(join(sandbox, 'root/etc'), { recursive: true })
  for (const file of ['passwd', 'group', 'shadow', 'gshadow'])
    copyFileSync(join(sandbox, 'etc', file), join(sandbox, 'root/etc', file))
  return sandbox
}

/**
 * What deploy starts from: a sandbox for the server with its stand-ins, and a source folder holding a
 * config.yaml on a free port and the `.env` given (by default: keys, the host, the executable).
 */
async function deploySource(
  env: (port: number, sandbox: string) => string = () =>
    `GATEWAY_API_KEY=${gatewayKey}\nPROVIDER_KEY=sk-deployed\nSSH_HOST=gateway.test\nBINARY=${binary}\n`,
) {
  const sandbox = remoteSandbox()
  const port = await unusedPort()
  const source = tempDir('ai-gateway-src-')
  writeFileSync(join(source, 'config.yaml'), configYaml(port))
  writeFileSync(join(source, '.env'), env(port, sandbox))
  return { sandbox, port, source, ...shims(sandbox) }
}

/** Stops the gateway the systemctl stand-in started, if it did. */
function stopDeployed(sandbox: string): void {
  const pid = join(sandbox, 'root/run.pid')
  if (existsSync(pid)) spawnSync('kill', [readFileSync(pid, 'utf8').trim()])
}

describe('deploy over SSH (stand-ins)', () => {
  test('deploy uploads, installs, enables, restarts, and checks /health on the remote', async () => {
    assert.ok(existsSync(binary), 'the single executable is built by the test above')
    // A non-root SSH user, and a deploy setting (REMOTE_DIR) given in .env rather than the environment.
    const { sandbox, port, source, dir, log } = await deploySource(
      (port, sandbox) =>
        `GATEWAY_API_KEY=${gatewayKey}\nPROVIDER_KEY=sk-deployed\nSSH_HOST=gateway.test\nSSH_USER=deploy\nSSH_PORT=2222\nexport SSH_KEY=/tmp/key\nDOMAIN=llm.example.com\nPORT=${port}\nREMOTE_DIR=${join(sandbox, 'opt/ai-gateway')}\nBINARY=${binary}\n`,
    )
    const remoteDir = join(sandbox, 'opt/ai-gateway')
    try {
      const result = sh(['deploy'], {
        PATH: `${dir}:${process.env.PATH}`,
        SOURCE_DIR: source,
        HEALTH_TRIES: '20',
      })
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /https:\/\/llm\.example\.com\/v1/)
      const calls = readFileSync(log, 'utf8')
      assert.match(calls, /^ssh -p 2222 .*-i \/tmp\/key deploy@gateway\.test/m)
      assert.match(
        calls,
        new RegExp(`^sudo mkdir -p ${remoteDir}$`, 'm'),
        'the upload directory made as root',
      )
      assert.match(calls, new RegExp(`^sudo chown deploy ${remoteDir}$`, 'm'), 'and handed to the SSH user')
      assert.match(calls, /^sudo systemctl restart ai-gateway$/m)
      assert.match(calls, /^systemctl enable ai-gateway$/m)
      assert.match(calls, /^systemctl restart ai-gateway$/m)
      assert.match(calls, /^curl -fsS --max-time 3 http:\/\/127\.0\.0\.1:\d+\/health$/m)
      const uploadedEnv = readFileSync(join(remoteDir, '.env'), 'utf8')
      assert.ok(!/SSH_|REMOTE_DIR|BINARY/.test(uploadedEnv), 'deploy settings stay local')
      assert.match(uploadedEnv, /GATEWAY_API_KEY=/)
      // The uploaded config.yaml and .env stay there after install-service copied them.
      assert.equal(mode(remoteDir), '700', 'no other user on the server can read what was uploaded')
      const installed = join(sandbox, 'root')
      assert.equal(mode(join(installed, 'etc/ai-gateway/.env')), '600')
      assert.ok(!/SSH_/.test(readFileSync(join(installed, 'etc/ai-gateway/.env'), 'utf8')))
      assert.ok(existsSync(join(installed, 'usr/local/bin/ai-gateway')))
      assert.ok(existsSync(join(installed, 'etc/systemd/system/ai-gateway.service')))
      const health = await fetch(`http://127.0.0.1:${port}/health`)
      assert.equal(health.status, 200, 'the deployed gateway is running')
    } finally {
      stopDeployed(sandbox)
    }
  })

  test('deploy checks /health with wget on a server without curl (Debian standard utilities have only wget)', async () => {
    assert.ok(existsSync(binary), 'the single executable is built by the test above')
    const { sandbox, source, dir, log } = await deploySource()
    rmSync(join(dir, 'curl'))
    // Every command of this machine but curl.
    const tools = tempDir('tools-')
    for (const from of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
      if (!existsSync(from)) continue
      for (const name of readdirSync(from)) {
        if (name !== 'curl' && !existsSync(join(tools, name)))
          symlinkSync(join(from, name), join(tools, name))
      }
    }
    try {
      const result = sh(['deploy'], {
        PATH: `${dir}:${tools}`,
        SOURCE_DIR: source,
        REMOTE_DIR: join(sandbox, 'opt/ai-gateway'),
        HEALTH_TRIES: '20',
      })
      assert.equal(result.code, 0, result.stderr)
      assert.match(readFileSync(log, 'utf8'), /^systemctl restart ai-gateway$/m)
    } finally {
      stopDeployed(sandbox)
    }
  })

  test('deploy checks /health on the port in config.yaml, whatever PORT says here', async () => {
    assert.ok(existsSync(binary), 'the single executable is built by the test above')
    const { sandbox, port, source, dir, log } = await deploySource()
    try {
      // PORT in this shell (a dev server's, say) never reaches the server: the config's port is used.
      const result = sh(['deploy'], {
        PATH: `${dir}:${process.env.PATH}`,
        SOURCE_DIR: source,
        REMOTE_DIR: join(sandbox, 'opt/ai-gateway'),
        HEALTH_TRIES: '20',
        PORT: '9',
      })
      assert.equal(result.code, 0, result.stderr)
      assert.match(
        readFileSync(log, 'utf8'),
        new RegExp(`^curl -fsS --max-time 3 http://127\\.0\\.0\\.1:${port}/health$`, 'm'),
      )
      assert.match(result.stderr, new RegExp(`is up on gateway\\.test port ${port} `))
    } finally {
      stopDeployed(sandbox)
    }
  })

  test('the port deploy checks is decided as the gateway decides it, from config.yaml and the uploaded .env', () => {
    const fakeBinary = join(tempDir('bin-'), 'ai-gateway')
    writeFileSync(fakeBinary, '#!/bin/sh\nexit 0\n')
    chmodSync(fakeBinary, 0o755)
    // [config.yaml's lines about the port, .env lines, this side's environment, the port checked]
    const cases: [string, string, Record<string, string>, string][] = [
      ['port: 20001', 'PORT=20002', {}, '20001'],
      ['port: "20003"   # the main port', '', {}, '20003'],
      ['port: ${PORT}', 'PORT=20004', {}, '20004'],
      ['port: ${PORT:-20005}', '', {}, '20005'],
      ['port: ${PORT:-20005}', 'PORT=', {}, '20005'],
      ["port: '${GW_PORT:-20005}'", 'export GW_PORT="20006"', { GW_PORT: '20000' }, '20006'],
      ['', 'PORT=20007', {}, '20007'],
      ['metrics:\n  port: 20008', '', {}, '8080'],
      ['', '', { PORT: '20009' }, '8080'],
      // A .env saved with Windows line endings, as systemd (for which a CR ends a line) reads it.
      ['', 'PORT=20011\r\nOTHER=1\r', {}, '20011'],
      // The gateway will not start (the variable is missing); the check fails at 8080, showing its log.
      ['port: ${GW_PORT}', '', { GW_PORT: '20010' }, '8080'],
    ]
    for (const [lines, envLines, env, expected] of cases) {
      const sandbox = remoteSandbox()
      const source = tempDir('ai-gateway-src-')
      writeFileSync(join(source, 'config.yaml'), `api_key: k\n${lines}\n`)
      writeFileSync(join(source, '.env'), `SSH_HOST=gateway.test\n${envLines}\n`)
      const { dir, log } = shims(sandbox)
      const result = sh(['deploy'], {
        ...env,
        PATH: `${dir}:${process.env.PATH}`,
        SOURCE_DIR: source,
        REMOTE_DIR: join(sandbox, 'opt/ai-gateway'),
        BINARY: fakeBinary,
        HEALTH_TRIES: '1',
      })
      const checked = /^curl -fsS --max-time 3 http:\/\/127\.0\.0\.1:(\d+)\/health$/m.exec(
        readFileSync(log, 'utf8'),
      )
      assert.equal(
        checked?.[1],
        expected,
        `${lines} | ${envLines} | ${JSON.stringify(env)}\n${result.stderr}`,
      )
    }
  })

  test('deploy checks /health at the address the gateway listens on, from config.yaml and the uploaded .env', () => {
    const fakeBinary = join(tempDir('bin-'), 'ai-gateway')
    writeFileSync(fakeBinary, '#!/bin/sh\nexit 0\n')
    chmodSync(fakeBinary, 0o755)
    // [config.yaml's lines about the host, .env lines, the address checked]
    const cases: [string, string, string][] = [
      ['', '', '127.0.0.1'],
      ['host: 0.0.0.0', '', '127.0.0.1'],
      ['host: "::"', '', '127.0.0.1'],
      ['host: 127.0.0.2', '', '127.0.0.2'],
      ["host: '10.0.0.5'   # the private network", '', '10.0.0.5'],
      ['host: localhost', '', 'localhost'],
      ['host: ::1', '', '[::1]'],
      ['host: ${BIND_ADDRESS}', 'BIND_ADDRESS=10.0.0.6', '10.0.0.6'],
      ['host: ${BIND_ADDRESS:-10.0.0.7}', '', '10.0.0.7'],
      ['metrics:\n  host: 10.0.0.8', '', '127.0.0.1'],
      // Not an address: never put into the command run on the server.
      ['host: "$(touch /tmp/x)"', '', '127.0.0.1'],
    ]
    for (const [lines, envLines, expected] of cases) {
      const sandbox = remoteSandbox()
      const source = tempDir('ai-gateway-src-')
      writeFileSync(join(source, 'config.yaml'), `api_key: k\nport: 20001\n${lines}\n`)
      writeFileSync(join(source, '.env'), `SSH_HOST=gateway.test\n${envLines}\n`)
      const { dir, log } = shims(sandbox)
      const result = sh(['deploy'], {
        PATH: `${dir}:${process.env.PATH}`,
        SOURCE_DIR: source,
        REMOTE_DIR: join(sandbox, 'opt/ai-gateway'),
        BINARY: fakeBinary,
        HEALTH_TRIES: '1',
      })
      const checked = /^curl -fsS --max-time 3 http:\/\/(\S+):20001\/health$/m.exec(readFileSync(log, 'utf8'))
      assert.equal(checked?.[1], expected, `${lines} | ${envLines}\n${result.stderr}`)
    }
  })

  test('deploy fails loudly when the remote never becomes healthy', () => {
    const sandbox = remoteSandbox()
    const source = tempDir('ai-gateway-src-')
    writeFileSync(join(source, 'config.yaml'), 'api_key: [broken')
    writeFileSync(join(source, '.env'), 'SSH_HOST=gateway.test\nSSH_USER=deploy\nPORT=9\n')
    const { dir, log } = shims(sandbox)
    const result = sh(['deploy'], {
      PATH: `${dir}:${process.env.PATH}`,
      SOURCE_DIR: source,
      REMOTE_DIR: join(sandbox, 'opt'),
      HEALTH_TRIES: '2',
    })
    assert.notEqual(result.code, 0)
    assert.match(result.stderr, /did not answer \/health/)
    // The service's own lines, read as root: a user outside the adm and systemd-journal groups would
    // see none of a system service's journal.
    assert.match(readFileSync(log, 'utf8'), /^sudo journalctl -u ai-gateway/m)
    assert.match(result.stderr, /invalid config/)
  })

  test('deploy-docker uploads the compose project and waits for a healthy container', () => {
    const sandbox = sandboxRoot()
    const source = sourceDir('GATEWAY_API_KEY=abc\nSSH_HOST=gateway.test\nDOMAIN=llm.example.com\n')
    // In the container the gateway listens on every interface, where Traefik reaches it.
    writeFileSync(join(source, 'config.yaml'), configYaml().replace(/^host: .*\n/m, ''))
    // As the gateway's own warning advises on a server: the container's user could not read it as is.
    chmodSync(join(source, 'config.yaml'), 0o600)
    const { dir, log } = shims(sandbox)
    const remoteDir = join(sandbox, 'srv/ai-gateway')
    const result = sh(['deploy-docker'], {
      PATH: `${dir}:${process.env.PATH}`,
      SOURCE_DIR: source,
      REMOTE_DIR: remoteDir,
    })
    assert.equal(result.code, 0, result.stderr)
    const calls = readFileSync(log, 'utf8')
    assert.match(calls, /^docker compose up -d --build$/m)
    assert.equal(calls.match(/^docker inspect/gm)?.length, 2, 'polled until healthy')
    for (const file of [
      'Dockerfile',
      'docker-compose.yml',
      '.dockerignore',
      'package-lock.json',
      'src/cli.ts',
      'config.yaml',
      '.env',
    ]) {
      assert.ok(existsSync(join(remoteDir, file)), file)
    }
    assert.ok(!readFileSync(join(remoteDir, '.env'), 'utf8').includes('SSH_'))
    assert.equal(mode(join(remoteDir, 'config.yaml')), '644', "readable by the container's node user")
    assert.equal(mode(remoteDir), '700', 'and by no one else on the server')
    assert.equal(mode(join(remoteDir, '.env')), '600')
    assert.match(result.stderr, /https:\/\/llm\.example\.com/)
  })

  test('deploy-docker takes DOMAIN and CERT_RESOLVER from this shell too, as its other settings', () => {
    const sandbox = sandboxRoot()
    // .env.example leaves DOMAIN empty; the shell's value wins, as for every setting.
    const source = sourceDir('GATEWAY_API_KEY=abc\nDOMAIN=')
    writeFileSync(join(source, 'config.yaml'), configYaml().replace(/^host: .*\n/m, ''))
    const { dir } = shims(sandbox)
    const remoteDir = join(sandbox, 'srv/ai-gateway')
    const result = sh(['deploy-docker'], {
      PATH: `${dir}:${process.env.PATH}`,
      SOURCE_DIR: source,
      REMOTE_DIR: remoteDir,
      SSH_HOST: 'gateway.test',
      DOMAIN: 'llm.example.com',
      CERT_RESOLVER: 'le-staging',
    })
    assert.equal(result.code, 0, result.stderr)
    // What docker compose reads on the server, for Host() and the cert resolver: the last line wins.
    const uploaded = readFileSync(join(remoteDir, '.env'), 'utf8').split('\n')
    assert.equal(
      uploaded.findLast((line) => line.startsWith('DOMAIN=')),
      'DOMAIN=llm.example.com',
    )
    assert.equal(
      uploaded.findLast((line) => line.startsWith('CERT_RESOLVER=')),
      'CERT_RESOLVER=le-staging',
    )
    assert.ok(uploaded.includes('GATEWAY_API_KEY=abc'))
  })

  test('deploy-docker refuses a config that binds the gateway to one address, which Traefik cannot reach', () => {
    // [config.yaml's host line, .env lines, refused]
    const cases: [string, string, boolean][] = [
      ['host: 127.0.0.1', '', true],
      ['host: ${BIND_ADDRESS:-127.0.0.1}', '', true],
      ['host: ${BIND_ADDRESS}', 'BIND_ADDRESS=10.0.0.5', true],
      ['host: 0.0.0.0', '', false],
      ['host: "::"', '', false],
      ['host: ${BIND_ADDRESS:-0.0.0.0}', '', false],
    ]
    for (const [line, envLines, refused] of cases) {
      const sandbox = sandboxRoot()
      const source = sourceDir(`SSH_HOST=gateway.test\nDOMAIN=llm.example.com\n${envLines}\n`)
      writeFileSync(join(source, 'config.yaml'), configYaml().replace(/^host: .*$/m, line))
      const { dir, log } = shims(sandbox)
      const result = sh(['deploy-docker'], {
        PATH: `${dir}:${process.env.PATH}`,
        SOURCE_DIR: source,
        REMOTE_DIR: join(sandbox, 'srv/ai-gateway'),
      })
      const calls = existsSync(log) ? readFileSync(log, 'utf8') : ''
      if (refused) {
        assert.notEqual(result.code, 0, line)
        assert.match(result.stderr, /must listen on every interface/, line)
        assert.ok(!/^docker /m.test(calls), `${line}: nothing started`)
      } else {
        assert.equal(result.code, 0, `${line}\n${result.stderr}`)
      }
    }
  })
})

describe('container files', () => {
  test('the Dockerfile passes dockerfile-utils validation and keeps its promises', () => {
    const text = readFileSync(join(root, 'Dockerfile'), 'utf8')
    assert.deepEqual(validate(text), [])
    const froms = text.split('\n').filter((l) => l.startsWith('FROM '))
    assert.equal(froms.length, 2, 'multi-stage')
    for (const from of froms) assert.match(from, /:[\w.-]*\d[\w.-]*(\s|$)|@sha256:/, `pinned: ${from}`)
    assert.match(text, /^USER node$/m)
    assert.match(text, /^HEALTHCHECK /m)
    assert.ok(!/COPY .*(config\.yaml|\.env)/.test(text), 'no config or secrets baked in')
    assert.match(readFileSync(join(root, '.dockerignore'), 'utf8'), /^\.env$/m)
  })

  test('docker-compose.yml passes dclint and has the Traefik wiring', () => {
    const result = spawnSync(join(nodeBin, 'dclint'), [join(root, 'docker-compose.yml')], {
      encoding: 'utf8',
      env: { ...process.env, DOMAIN: 'x' },
    })
    assert.equal(result.status, 0, result.stdout + result.stderr)
    const text = readFileSync(join(root, 'docker-compose.yml'), 'utf8')
    assert.match(text, /Host\(`\$\{DOMAIN/)
    assert.match(text, /entrypoints=websecure/)
    assert.match(text, /certresolver=\$\{CERT_RESOLVER/)
    assert.match(text, /traefik-public:\n\s+external: true/)
    assert.match(text, /memory: \d+M/)
    assert.match(text, /healthcheck:/)
    assert.match(text, /config\.yaml:\/etc\/ai-gateway\/config\.yaml:ro/)
    // Longer than the default shutdown_timeout, so a redeploy lets in-flight requests finish.
    assert.match(text, /stop_grace_period: 45s/)
  })
})

/** The gateway's output up to its `listening` line, run on `file` (as another user when `uid` is given). */
async function startUpLines(file: string, uid?: number): Promise<string> {
  const child = spawn(process.execPath, [join(root, 'bin', 'ai-gateway.js'), '--config', file], {
    env: { PATH: process.env.PATH ?? '', GATEWAY_API_KEY: gatewayKey, PROVIDER_KEY: 'k' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(uid === undefined ? {} : { uid, gid: uid }),
  })
  let out = ''
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    out += chunk
    if (out.includes('"msg":"listening"')) break
  }
  child.kill('SIGTERM')
  await once(child, 'exit')
  return out
}

test('the gateway warns when its config file is readable by other users', async () => {
  const dir = tempDir('ai-gateway-perm-')
  const file = join(dir, 'config.yaml')
  writeFileSync(file, configYaml())
  chmodSync(file, 0o644)
  const out = await startUpLines(file)
  assert.match(out, /config file is readable by other users/)
  chmodSync(file, 0o600)
  const quiet = await runCli(['validate', '--config', file], {
    env: { GATEWAY_API_KEY: gatewayKey, PROVIDER_KEY: 'k' },
  })
  assert.equal(quiet.code, 0)
})

// As in the container: the config belongs to someone else (root, on the host), and the gateway reads it
// through its "other" bits, so chmod 600 would lock the gateway out.
test('a config the gateway reads as another user gets no chmod 600 advice, only a warning if keys are in it', {
  skip: process.getuid?.() !== 0 && 'needs root, to run the gateway as another user',
}, async () => {
  const dir = tempDir('ai-gateway-perm-')
  chmodSync(dir, 0o755)
  const file = join(dir, 'config.yaml')
  writeFileSync(file, configYaml())
  chmodSync(file, 0o644)
  const nobody = 65_534
  const references = await startUpLines(file, nobody)
  assert.match(references, /"msg":"listening"/)
  assert.ok(!/chmod 600|readable by other users/.test(references), references)
  writeFileSync(file, configYaml().replace('${PROVIDER_KEY}', 'sk-written-into-the-file'))
  const literal = await startUpLines(file, nobody)
  assert.match(literal, /config file with keys in it is readable by other users/)
  assert.ok(!literal.includes('chmod 600'), literal)
})
