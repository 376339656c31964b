// The SVG bar chart of a run's ratios (agent ÷ the limit), with parity and each row's target.
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function svgChart(rows, title) {
  const shown = rows.filter((r) => Number.isFinite(r.ratio))
  const labelW = 430, barW = 420, rowH = 26, top = 48, left = 10
  const max = Math.max(2, ...shown.map((r) => r.ratio), ...shown.map((r) => r.target ?? 0)) * 1.05
  const x = (v) => left + labelW + (v / max) * barW
  const h = top + shown.length * rowH + 40
  const w = left + labelW + barW + 90
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<text x="${left}" y="36" fill="#555">agent ÷ raw CLI or bare Koa (1 = parity, shorter is better); red tick: target; green bar: target met</text>`,
  ]
  shown.forEach((r, i) => {
    const y = top + i * rowH
    const met = r.target === undefined ? undefined : r.ratio <= r.target
    const fill = met === undefined ? '#8aa4c8' : met ? '#5aa469' : '#d9822b'
    out.push(`<text x="${left}" y="${y + 16}">${esc(r.benchmark.length > 62 ? r.benchmark.slice(0, 60) + '…' : r.benchmark)}</text>`)
    out.push(`<rect x="${x(0)}" y="${y + 4}" width="${Math.max(1, x(r.ratio) - x(0)).toFixed(1)}" height="${rowH - 8}" fill="${fill}"/>`)
    out.push(`<text x="${(x(r.ratio) + 4).toFixed(1)}" y="${y + 16}">${r.ratio.toFixed(2)}×</text>`)
    if (r.target !== undefined) out.push(`<line x1="${x(r.target).toFixed(1)}" x2="${x(r.target).toFixed(1)}" y1="${y + 1}" y2="${y + rowH - 1}" stroke="#c0392b" stroke-width="3"/>`)
  })
  const bottom = top + shown.length * rowH
  out.push(`<line x1="${x(1)}" x2="${x(1)}" y1="${top}" y2="${bottom}" stroke="#333" stroke-dasharray="4 3"/>`)
  for (let v = 0; v <= max; v += max > 6 ? 2 : 0.5) {
    out.push(`<text x="${x(v).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" fill="#555">${v}</text>`)
  }
  out.push('</svg>')
  return out.join('\n') + '\n'
}
