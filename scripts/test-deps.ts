// Makes sure the system tools the test suite uses are present (shellcheck for install.sh,
// systemd-analyze for the unit file, python3 for a loopback black hole, curl for the deploy
// stand-ins, openssl for a test certificate), installing them from Debian's packages when we may.
// Runs before `npm test`.

import { execFileSync, spawnSync } from 'node:child_process'

const tools: Record<string, string> = {
  shellcheck: 'shellcheck',
  'systemd-analyze': 'systemd',
  python3: 'python3',
  curl: 'curl',
  openssl: 'openssl',
}
const has = (command: string) =>
  spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0

const missing = Object.keys(tools).filter((command) => !has(command))
if (missing.length > 0) {
  const packages = missing.map((command) => tools[command] as string)
  const canInstall = process.getuid?.() === 0 && has('apt-get')
  if (!canInstall) {
    console.error(
      `The tests need: ${missing.join(', ')}. Install them first, e.g. sudo apt-get install ${packages.join(' ')}`,
    )
    process.exit(1)
  }
  console.error(`installing ${packages.join(', ')} for the tests`)
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
  execFileSync('apt-get', ['install', '-y', '-qq', ...packages], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  })
}
