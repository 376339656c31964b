import { readFileSync } from 'node:fs'

/** Why a token file was refused; each program words it for its own users. */
export class TokenFileError extends Error {
  override name = 'TokenFileError'
  constructor(readonly reason: 'unreadable' | 'empty' | 'whitespace', message: string) {
    super(message)
  }
}

/** A bearer token kept in a file: one trailing newline dropped, an empty or whitespace-bearing token refused. */
export function readTokenFile(path: string): string {
  let text: string
  try { text = readFileSync(path, 'utf8') } catch (e) { throw new TokenFileError('unreadable', (e as NodeJS.ErrnoException).code ?? (e as Error).message) }
  const token = text.replace(/\r?\n$/, '')
  if (token === '') throw new TokenFileError('empty', 'empty')
  if (/\s/.test(token)) throw new TokenFileError('whitespace', 'the token must not contain whitespace')
  return token
}
