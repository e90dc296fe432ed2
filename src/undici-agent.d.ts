// Types for the one undici module the gateway loads (see upstream.ts): its Agent, as undici's own
// typings describe it.
declare module 'undici/lib/dispatcher/agent.js' {
  import { Agent } from 'undici'
  export default Agent
}
