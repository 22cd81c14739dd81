"""The JavaScript that the browser tier evaluates in JupyterLab's page (harness.py uses them)."""

# Signatures of the images under a root element: decoded pixels, hashed, with their spread, so
# "the figure changed" means the picture changed, not just the img element or its URL.
IMAGES_JS = """
async (root, selector) => {
  const out = [];
  for (const img of root.querySelectorAll(selector)) {
    try { await img.decode(); } catch (e) { out.push({error: String(e)}); continue; }
    const w = img.naturalWidth, h = img.naturalHeight;
    if (!w || !h) { out.push({error: 'empty image'}); continue; }
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const ctx = c.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, w, h).data;
    let hash = 0x811c9dc5, s = 0, s2 = 0;
    for (let i = 0; i < d.length; i++) { hash ^= d[i]; hash = Math.imul(hash, 16777619); }
    for (let i = 0; i < d.length; i += 4) { const l = d[i] + d[i+1] + d[i+2]; s += l; s2 += l * l; }
    const n = d.length / 4, mean = s / n;
    const std = Math.sqrt(Math.max(0, s2 / n - mean * mean)) / 3;
    out.push({w, h, hash: (hash >>> 0).toString(16), std});
  }
  return out;
}
"""

# Find the outputs that the saved notebook says are widget views ([cell index, output index]),
# mark them for later locators and say whether each is rendered as a widget. (JupyterLab's widget
# renderer is a plain Panel: unlike other renderers it carries no data-mime-type attribute.)
VIEWS_JS = """
(where) => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  return where.map(([c, o], k) => {
    const cell = cells[c];
    const child = cell && cell.querySelectorAll(
        ':scope .jp-Cell-outputArea > .jp-OutputArea-child')[o];
    const el = child && child.querySelector('.jp-OutputArea-output');
    if (!el) return {k, cell: c, output: o, rendered: false, error: 'no such output in the page',
                     sliders: 0, images: 0};
    el.setAttribute('data-browser-test-view', String(k));
    const text = (el.textContent || '').trim();
    const failed = /Error displaying widget|Loading widget/.test(text);
    return {
      k, cell: c, output: o,
      rendered: el.querySelector(':scope > .jupyter-widgets') !== null && !failed,
      error: failed ? text.slice(0, 200) : null,
      shown_as: el.dataset.mimeType || null,
      sliders: el.querySelectorAll('.noUi-handle').length,
      images: el.querySelectorAll('img').length,
    };
  });
}
"""

PROMPTS_JS = """
() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
        .map(e => e.textContent.trim())
"""
