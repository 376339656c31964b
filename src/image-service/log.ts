/** One-line structured logs on stderr (journald adds the timestamp under systemd). */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export function stderrLogger(): Logger {
  const line = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    process.stderr.write(`${level} ${msg}${fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields) : ''}\n`)
  }
  return { info: line('info'), warn: line('warn'), error: line('error') }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
