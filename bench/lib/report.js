// @ts-check
/** The printed table and the SVG chart (a hand-written SVG string). */

/**
 * @typedef {{
 *   id: string, title: string, short: string, unit: string, better: "higher" | "lower",
 *   medians: Record<string, number | undefined>,
 *   spreads: Record<string, string>,
 *   samples: Record<string, string>,
 *   flags: Record<string, string>,
 *   ratios: { ws?: number | undefined, rawNet?: number | undefined, bunToWs?: number | undefined, rawNetToWs?: number | undefined, floor?: number | undefined },
 * }} Row
 */

/** Numbers as people read them: 3 significant digits, thousands separated. */
export function fmt(/** @type {number | undefined} */ x) {
  if (x === undefined || !Number.isFinite(x)) return "—";
  const abs = Math.abs(x);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const ratio = (/** @type {number | undefined} */ x) =>
  x === undefined || !Number.isFinite(x) ? "—" : `${x.toFixed(2)}x`;

/**
 * @param {Row[]} rows
 * @param {string[]} columns
 */
export function table(rows, columns) {
  const floor = columns.includes("floor");
  const head = ["scenario", "unit", ...columns, "sockway/ws", "sockway/raw-net"];
  if (floor) head.push("sockway/floor");
  const body = rows.map((r) => [
    r.title,
    `${r.unit} ${r.better === "higher" ? "↑" : "↓"}`,
    ...columns.map((c) => `${fmt(r.medians[c])}${r.flags[c] ?? ""}`),
    ratio(r.ratios.ws),
    ratio(r.ratios.rawNet),
    ...(floor ? [ratio(r.ratios.floor)] : []),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (/** @type {string[]} */ cells) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

const escapeXml = (/** @type {string} */ s) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

/**
 * Horizontal bars of each server's ratio to ws, per scenario, on a log scale centred on 1.0.
 * @param {Row[]} rows
 * @param {string} caption
 */
export function svgChart(rows, caption) {
  const series = /** @type {const} */ ([
    { key: "ws", label: "sockway / ws", color: "#2563eb" },
    { key: "rawNetToWs", label: "raw-net / ws (ceiling on Node)", color: "#9ca3af" },
    { key: "bunToWs", label: "bun / ws (Bun.serve)", color: "#f59e0b" },
  ]);
  // Rows without a short label (the ping-pong round trip, which repeats ping-pong) are left out.
  const shown = rows.filter((r) => r.short && series.some((s) => r.ratios[s.key] !== undefined));
  const maxLog = Math.max(
    1,
    ...shown.flatMap((r) =>
      series.map((s) => {
        const v = r.ratios[s.key];
        return v && v > 0 ? Math.ceil(Math.abs(Math.log2(v))) : 0;
      }),
    ),
  );
  const labelW = 280;
  const plotW = 520;
  const barH = 11;
  const groupH = series.length * (barH + 2) + 14;
  const top = 62;
  const width = labelW + plotW + 90;
  const height = top + shown.length * groupH + 40;
  const x0 = labelW + plotW / 2; // the 1.0 line
  const xOf = (/** @type {number} */ v) => x0 + (Math.log2(v) / maxLog) * (plotW / 2);
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="20" font-size="15" font-weight="600">Ratio to ws per scenario (log scale; ↑ higher is better, ↓ lower is better)</text>`,
    `<text x="12" y="38" fill="#555">${escapeXml(caption)}</text>`,
  );
  let lx = labelW;
  for (const s of series) {
    out.push(`<rect x="${lx}" y="46" width="10" height="10" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 14}" y="55">${escapeXml(s.label)}</text>`);
    lx += 14 + s.label.length * 6.4 + 18;
  }
  for (let k = -maxLog; k <= maxLog; k++) {
    const v = 2 ** k;
    const x = xOf(v);
    out.push(
      `<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${height - 30}" stroke="${k === 0 ? "#111" : "#e5e7eb"}" stroke-width="${k === 0 ? 1.5 : 1}"/>`,
      `<text x="${x}" y="${height - 16}" text-anchor="middle" fill="#555">${v >= 1 ? v : `1/${2 ** -k}`}</text>`,
    );
  }
  shown.forEach((r, i) => {
    const y = top + i * groupH;
    out.push(
      `<text x="${labelW - 8}" y="${y + groupH / 2}" text-anchor="end">${escapeXml(r.short)} (${escapeXml(r.unit)}) ${r.better === "higher" ? "↑" : "↓"}</text>`,
    );
    series.forEach((s, j) => {
      const v = r.ratios[s.key];
      if (v === undefined || !(v > 0)) return;
      const yb = y + 4 + j * (barH + 2);
      const x = xOf(Math.min(Math.max(v, 2 ** -maxLog), 2 ** maxLog));
      const [a, b] = x >= x0 ? [x0, x] : [x, x0];
      out.push(
        `<rect x="${a}" y="${yb}" width="${Math.max(1, b - a)}" height="${barH}" fill="${s.color}"/>`,
        `<text x="${x >= x0 ? b + 4 : a - 4}" y="${yb + barH - 1}" text-anchor="${x >= x0 ? "start" : "end"}" font-size="10">${v.toFixed(2)}</text>`,
      );
    });
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
