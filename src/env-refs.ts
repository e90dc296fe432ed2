// `${VAR}` references in config string values, resolved after YAML parsing so a value cannot
// change the document's structure.

// Every `${…}` is a reference, and `$${…}` its escape (the literal text `${…}`). Only `${NAME}` and
// `${NAME:-default}` are supported; the shell's other forms (`${NAME:?message}`, `${NAME-}`,
// `${NAME:=x}`, `${NAME:+x}` …) are refused rather than kept as text, because a value kept as text
// would, say, make `${GATEWAY_API_KEY:?set it}` the gateway key itself. A `$` anywhere else
// (`pa$$word`, `$HOME`) is plain text.
const reference = /\$(\$)?\{([^}]*)\}/g
const supported = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/
// A shell form: a name, then an operator (`:-` `-` `:=` `=` `:?` `?` `:+` `+`, or the pattern and
// substring forms' `#` `%` `/` `^` `,` `:`), then whatever follows it.
const shellForm = /^([A-Za-z_][A-Za-z0-9_]*)(:[-=?+]|[-=?+#%/^,:])([\s\S]*)$/

export interface Resolution {
  value: unknown
  /** Every referenced variable that is unset and has no default, in order of first use. */
  missing: string[]
  /** References whose default holds another reference, which is not supported. */
  nested: string[]
  /**
   * References in a shell form other than `${NAME}` and `${NAME:-default}`, as the name and operator
   * only (`${NAME:?…}`): the text after the operator may be a key (`${GATEWAY_API_KEY-gw-…}`).
   */
  unsupported: string[]
  /**
   * Where (`providers[0].api_key`) a `${…}` holds no variable name: most likely a key that happens to
   * contain `${`, so the reference itself is never quoted.
   */
  unnamed: string[]
}

export function resolveEnvRefs(tree: unknown, env: Readonly<Record<string, string | undefined>>): Resolution {
  const missing = new Set<string>()
  const nested = new Set<string>()
  const unsupported = new Set<string>()
  const unnamed = new Set<string>()
  const resolveString = (text: string, path: string): string =>
    text.replace(reference, (whole, escaped: string | undefined, body: string) => {
      if (escaped !== undefined) return whole.slice(1)
      const form = supported.exec(body)
      if (form === null) {
        const shell = shellForm.exec(body)
        if (shell === null) unnamed.add(path === '' ? '(top level)' : path)
        else unsupported.add(`\${${shell[1]}${shell[2]}${shell[3] === '' ? '' : '…'}}`)
        return ''
      }
      const [, name = '', fallback] = form
      // `${A:-${B}}` would end at the first `}` and leave a stray one behind: refused instead.
      if (fallback?.includes('${')) {
        nested.add(name)
        return ''
      }
      const value = env[name]
      if (value !== undefined && (value !== '' || fallback === undefined)) return value
      if (fallback !== undefined) return fallback
      missing.add(name)
      return ''
    })
  const walk = (node: unknown, path: string): unknown => {
    if (typeof node === 'string') return resolveString(node, path)
    if (Array.isArray(node)) return node.map((child, i) => walk(child, `${path}[${i}]`))
    if (node !== null && typeof node === 'object') {
      const at = (key: string) => (path === '' ? key : `${path}.${key}`)
      return Object.fromEntries(Object.entries(node).map(([key, child]) => [key, walk(child, at(key))]))
    }
    return node
  }
  const value = walk(tree, '')
  return {
    value,
    missing: [...missing],
    nested: [...nested],
    unsupported: [...unsupported],
    unnamed: [...unnamed],
  }
}
