/** The logger interface the agent writes to: JSON lines on stderr by default. */
export interface Logger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export function jsonLogger(stream: NodeJS.WritableStream = process.stderr, level: 'info' | 'warn' | 'error' = 'info'): Logger {
  const order = { info: 0, warn: 1, error: 2 }
  const write = (lvl: keyof typeof order) => (obj: object, msg: string) => {
    if (order[lvl] < order[level]) return
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...obj })}\n`)
  }
  return { info: write('info'), warn: write('warn'), error: write('error') }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
