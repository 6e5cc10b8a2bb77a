#!/usr/bin/env python3
"""Deterministic generator of a realistic webroot, for the benchmarks.

    bench/gen_webroot.py --size 200MiB [--seed 1] [--text-fraction 0.15] [--force]

prints the path of the tree on stdout (statistics on stderr). Trees are cached
under bench/work/trees/ keyed by size, seed, text fraction and generator version;
a cached tree is reused as it is (`--force` regenerates it).

What it looks like: a WordPress-style site - wp-admin/, wp-includes/, themes and
plugins under wp-content/ with their PHP, JS, CSS, HTML, JSON, SVG and .po
files (many small files, text with the redundancy of real code: a shared pool of
lines per language, each file drawing mostly from a window of it, so zstd -3
gets roughly 4-6x on them), and wp-content/uploads/YYYY/MM/ with images,
PDFs, fonts and videos - random bytes behind the right magic numbers, i.e.
incompressible, as already-compressed media are - which make up most of the
bytes (1 - text fraction). A few relative symlinks (a directory, a file, the
active theme) and a few empty directories. Every mtime is fixed, so `tar` of the
tree is the same stream every time.

The same (size, seed, text fraction, version) always yields byte-identical trees:
all randomness comes from random.Random seeded from them (Python's Mersenne
Twister, whose streams are stable across versions), and the plan is made before
any file is written.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GEN_VERSION = 1
HERE = Path(__file__).resolve().parent
CACHE = HERE / "work" / "trees"
BASE_MTIME = 1_700_000_000  # 2023-11-14
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
         "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "t": 10**12}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m[2].lower() not in UNITS:
        raise ValueError(f"bad size {text!r} (examples: 200MiB, 1GiB, 500M, 123456)")
    return int(float(m[1]) * UNITS[m[2].lower()])


def fmt_size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


# ---------------------------------------------------------------------------
# text: per-language pools of plausible lines

WORDS = ("post user option meta term query cache block theme plugin widget menu admin "
         "site network comment media image attachment upload file path url request "
         "response route rest field setting capability role nonce hook filter action "
         "template style script asset locale string format date time author category "
         "tag taxonomy revision draft status editor gallery embed feed sitemap search "
         "page archive header footer sidebar nav link button form input label value "
         "item list data config error result handler manager loader registry factory "
         "payment order cart product price customer shipping tax coupon session").split()
VERBS = ("get set add update delete render register enqueue load parse validate "
         "sanitize escape filter apply build fetch save init handle prepare check "
         "format resolve create remove is has can should").split()


def _ident(rng: random.Random, style: str) -> str:
    n = rng.choice((1, 2, 2, 3))
    parts = [rng.choice(VERBS)] + [rng.choice(WORDS) for _ in range(n)]
    if style == "snake":
        return "_".join(parts)
    if style == "camel":
        return parts[0] + "".join(p.title() for p in parts[1:])
    if style == "pascal":
        return "".join(p.title() for p in parts)
    return "-".join(parts)


def _php_line(rng: random.Random) -> str:
    a, b, c = _ident(rng, "snake"), _ident(rng, "snake"), rng.choice(WORDS)
    ind = "\t" * rng.choice((0, 1, 1, 2, 2, 3))
    return ind + rng.choice((
        f"${c} = {a}( ${rng.choice(WORDS)}, '{rng.choice(WORDS)}' );",
        f"if ( ! empty( ${c}['{rng.choice(WORDS)}'] ) ) {{",
        "}",
        "return $this;",
        f"add_action( '{a}', array( $this, '{b}' ), {rng.choice((10, 20, 99))} );",
        f"add_filter( '{a}', '{b}', 10, {rng.randint(1, 3)} );",
        f"public function {b}( ${c}, $args = array() ) {{",
        f"$this->{c} = isset( $args['{c}'] ) ? $args['{c}'] : null;",
        f"/** @var {_ident(rng, 'pascal')} ${c} The {c} {rng.choice(WORDS)}. */",
        f" * @param string ${c} Optional. The {rng.choice(WORDS)} to {rng.choice(VERBS)}.",
        f"echo esc_html__( '{rng.choice(WORDS).title()} {rng.choice(WORDS)}', 'textdomain' );",
        f"foreach ( ${c}s as ${c} ) {{",
        f"$result = $wpdb->get_results( $wpdb->prepare( \"SELECT * FROM {{$wpdb->{c}s}} "
        f"WHERE {c}_id = %d\", $id ) );",
        f"throw new {_ident(rng, 'pascal')}Exception( '{rng.choice(WORDS)} failed' );",
        f"require_once __DIR__ . '/{_ident(rng, 'kebab')}.php';",
        "",
    ))


def _js_line(rng: random.Random) -> str:
    a, b, c = _ident(rng, "camel"), _ident(rng, "camel"), rng.choice(WORDS)
    ind = "  " * rng.choice((0, 1, 1, 2, 2, 3))
    return ind + rng.choice((
        f"const {c} = {a}({rng.choice(WORDS)}, '{rng.choice(WORDS)}');",
        f"if (!{c} || typeof {c}.{b} !== 'function') {{",
        "}",
        "return this;",
        f"$(document).on('click', '.{_ident(rng, 'kebab')}', function (event) {{",
        f"export function {b}({c}, options = {{}}) {{",
        f"this.{c} = options.{c} !== undefined ? options.{c} : null;",
        f"// {rng.choice(VERBS).title()} the {c} {rng.choice(WORDS)} before {rng.choice(VERBS)}.",
        f"{c}.addEventListener('{rng.choice(('change', 'input', 'submit', 'load'))}', {b});",
        f"for (let i = 0; i < {c}s.length; i++) {{",
        f"return fetch(`/wp-json/wp/v2/{c}s/${{id}}`).then((r) => r.json());",
        f"import {{ {b} }} from './{_ident(rng, 'kebab')}';",
        "",
    ))


def _css_line(rng: random.Random) -> str:
    sel = "." + _ident(rng, "kebab")
    return rng.choice((
        f"{sel} {rng.choice(('a', 'span', 'li', '.inner', '> div'))} {{",
        f"{sel}:{rng.choice(('hover', 'focus', 'active'))} {{",
        "}",
        f"  margin: {rng.randint(0, 4) * 4}px {rng.randint(0, 4) * 4}px;",
        f"  padding: {rng.randint(0, 6) * 2}px;",
        f"  color: #{rng.choice(('333', '1e1e1e', 'fff', '0073aa', '2271b1', 'd63638'))};",
        f"  font-size: {rng.choice((12, 13, 14, 16, 18, 20, 24))}px;",
        f"  display: {rng.choice(('block', 'flex', 'none', 'inline-block', 'grid'))};",
        "  box-sizing: border-box;",
        f"@media (max-width: {rng.choice((480, 600, 782, 960, 1280))}px) {{",
        f"  transition: {rng.choice(('opacity', 'transform', 'all'))} 0.{rng.randint(1, 5)}s ease;",
    ))


def _html_line(rng: random.Random) -> str:
    c = _ident(rng, "kebab")
    return rng.choice((
        f'<div class="{c}">',
        "</div>",
        f'<a href="/{rng.choice(WORDS)}/{_ident(rng, "kebab")}/" class="{c}">'
        f"{rng.choice(WORDS).title()}</a>",
        f"<p>{' '.join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize()}.</p>",
        f'<img src="/wp-content/uploads/2024/0{rng.randint(1, 9)}/{c}.jpg" alt="{c}" '
        f'width="{rng.choice((300, 768, 1024))}" loading="lazy">',
        f'<li class="menu-item menu-item-{rng.randint(10, 999)}">',
        f'<script src="/wp-includes/js/{c}.min.js?ver=6.{rng.randint(0, 5)}"></script>',
        f'<meta name="{rng.choice(WORDS)}" content="{rng.choice(WORDS)}">',
    ))


def _json_line(rng: random.Random) -> str:
    return "  " * rng.randint(1, 3) + rng.choice((
        f'"{rng.choice(WORDS)}": "{_ident(rng, "kebab")}",',
        f'"{rng.choice(WORDS)}": {rng.randint(0, 9999)},',
        f'"{rng.choice(WORDS)}": {rng.choice(("true", "false", "null"))},',
        f'"{rng.choice(WORDS)}": {{',
        "},",
    ))


def _po_line(rng: random.Random) -> str:
    w = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
    return rng.choice((f'msgid "{w.capitalize()}"', f'msgstr "{w[::-1].capitalize()}"',
                       f"#: includes/{_ident(rng, 'kebab')}.php:{rng.randint(1, 900)}", ""))


def _svg_line(rng: random.Random) -> str:
    pts = " ".join(f"{rng.randint(0, 512)},{rng.randint(0, 512)}" for _ in range(rng.randint(3, 9)))
    return rng.choice((f'<path d="M{pts}Z" fill="#{rng.randint(0, 0xFFFFFF):06x}"/>',
                       f'<g transform="translate({rng.randint(0, 99)} {rng.randint(0, 99)})">',
                       "</g>"))


LANGS = {"php": _php_line, "js": _js_line, "css": _css_line, "html": _html_line,
         "json": _json_line, "po": _po_line, "svg": _svg_line}
POOL_LINES = 20000
WINDOW = 2000


class TextMaker:
    def __init__(self, rng: random.Random) -> None:
        self.pools = {lang: [fn(rng) for _ in range(POOL_LINES)] for lang, fn in LANGS.items()}

    def make(self, rng: random.Random, lang: str, path: str, size: int) -> bytes:
        pool = self.pools[lang]
        start = rng.randrange(0, POOL_LINES - WINDOW)
        window = pool[start:start + WINDOW]
        head = {
            "php": f"<?php\n/**\n * {path}\n *\n * @package {path.split('/')[1] if '/' in path else 'core'}"
                   f"\n * @since {rng.randint(2, 6)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}\n */\n",
            "js": f"/*! {path} v{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)} */\n",
            "css": f"/* {path} */\n",
            "html": "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n",
            "json": "{\n",
            "po": f'# Translation of {path}\nmsgid ""\nmsgstr ""\n',
            "svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">\n',
        }[lang]
        out = [head]
        n = len(head)
        while n < size:
            lines = rng.choices(window, k=64)
            chunk = "\n".join(lines) + "\n"
            out.append(chunk)
            n += len(chunk)
        return "".join(out).encode()[:size]


# ---------------------------------------------------------------------------
# the plan


@dataclass
class Entry:
    path: str
    kind: str        # text language, or media kind
    size: int
    mtime: int


MEDIA = {  # kind: (magic, min size, max size, weight, ext)
    "thumb": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", 4 << 10, 60 << 10, 30, "jpg"),
    "jpeg": (b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", 80 << 10, 3 << 20, 20, "jpg"),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 2 << 10, 600 << 10, 12, "png"),
    "webp": (b"RIFF\x00\x00\x00\x00WEBPVP8 ", 10 << 10, 900 << 10, 8, "webp"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 50 << 10, 6 << 20, 4, "pdf"),
    "mp4": (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", 2 << 20, 48 << 20, 2, "mp4"),
    "woff2": (b"wOF2\x00\x01\x00\x00", 12 << 10, 120 << 10, 3, "woff2"),
    "zip": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", 100 << 10, 8 << 20, 1, "zip"),
}

TEXT_EXT = {"php": "php", "js": "js", "css": "css", "html": "html", "json": "json",
            "po": "po", "svg": "svg"}


def _lognormal_size(rng: random.Random, median: int, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(0, 1.1) * median)))


def make_plan(total: int, seed: int, text_fraction: float) -> tuple[list[Entry], list[str],
                                                                     list[tuple[str, str]]]:
    rng = random.Random(f"webroot-plan/{seed}/{GEN_VERSION}")
    entries: list[Entry] = []
    used: set[str] = set()

    def mt() -> int:
        return BASE_MTIME + rng.randrange(0, 3 * 365 * 86400)

    def add(path: str, kind: str, size: int) -> None:
        base, dot, ext = path.rpartition(".")
        i = 2
        while path in used:
            path = f"{base}-{i}{dot}{ext}"
            i += 1
        used.add(path)
        entries.append(Entry(path, kind, size, mt()))

    # --- text: code trees -------------------------------------------------
    text_budget = int(total * text_fraction)
    themes = [f"{rng.choice(WORDS)}{rng.choice(('', '-child', 'press', '-pro'))}" for _ in range(3)]
    plugins = sorted({f"{rng.choice(WORDS)}-{rng.choice(WORDS)}" for _ in range(40)})
    code_roots: list[tuple[str, list[str]]] = [
        ("wp-admin", ["", "includes", "css", "js", "network", "user", "maint"]),
        ("wp-includes", ["", "js", "js/jquery", "js/tinymce/plugins", "css", "blocks", "rest-api",
                         "rest-api/endpoints", "block-supports", "html-api", "SimplePie",
                         "Requests/src", "ID3", "sodium_compat/src/Core", "fonts"]),
    ]
    code_roots += [(f"wp-content/themes/{t}", ["", "inc", "template-parts", "assets/css",
                                               "assets/js", "languages", "patterns"])
                   for t in themes]
    code_roots += [(f"wp-content/plugins/{p}", ["", "includes", "admin", "public/js", "public/css",
                                                "languages", "vendor/composer",
                                                f"vendor/{rng.choice(WORDS)}/src"])
                   for p in plugins]
    lang_weights = {"php": 50, "js": 22, "css": 12, "html": 3, "json": 5, "po": 4, "svg": 4}
    langs, weights = zip(*lang_weights.items(), strict=True)
    median = {"php": 5000, "js": 6000, "css": 4000, "html": 3000, "json": 1500, "po": 9000,
              "svg": 2000}
    for name in ("index.php", "wp-config.php", "wp-login.php", "xmlrpc.php", "wp-cron.php",
                 "wp-load.php", "wp-settings.php", "wp-blog-header.php"):
        add(name, "php", _lognormal_size(rng, 3000, 400, 40000))
    add("readme.html", "html", 7400)
    add("license.txt", "po", 19900)
    add(".htaccess", "po", 700)
    add("robots.txt", "po", 120)
    used_text = sum(e.size for e in entries)
    while used_text < text_budget:
        root, subdirs = rng.choice(code_roots)
        sub = rng.choice(subdirs)
        lang = rng.choices(langs, weights)[0]
        size = _lognormal_size(rng, median[lang], 60, 400_000)
        size = min(size, max(60, text_budget - used_text))
        stem = _ident(rng, "kebab" if lang != "php" else rng.choice(("kebab", "snake")))
        if lang == "php" and rng.random() < 0.3:
            stem = "class-" + stem
        if lang in ("js", "css") and rng.random() < 0.4:
            stem += ".min"
        path = "/".join(x for x in (root, sub, f"{stem}.{TEXT_EXT[lang]}") if x)
        add(path, lang, size)
        used_text += size

    # --- media -----------------------------------------------------------
    media_budget = total - used_text
    kinds = list(MEDIA)
    mweights = [MEDIA[k][3] for k in kinds]
    used_media = 0
    months = [f"{y}/{m:02d}" for y in (2022, 2023, 2024) for m in range(1, 13)]
    while used_media < media_budget:
        kind = rng.choices(kinds, mweights)[0]
        _magic, lo, hi, _w, ext = MEDIA[kind]
        hi = max(lo, min(hi, media_budget // 8))  # small trees still get many files
        size = int(min(hi, max(lo, rng.lognormvariate(0, 0.9) * ((lo * hi) ** 0.5))))
        size = min(size, media_budget - used_media)
        if size <= 0:
            break
        if kind == "woff2":
            root, _s = rng.choice(code_roots[2:] or code_roots)
            family = rng.choice(WORDS)
            style = rng.choice(("regular", "bold", "italic"))
            path = f"{root}/assets/fonts/{family}-{style}.{ext}"
        elif kind == "zip":
            path = f"wp-content/ai1wm-backups/{rng.choice(WORDS)}-{rng.randint(1000, 9999)}.{ext}"
        elif kind == "png" and rng.random() < 0.2:
            root, _s = rng.choice(code_roots)
            path = f"{root}/images/{_ident(rng, 'kebab')}.{ext}"
        else:
            stem = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{rng.randint(1, 999)}"
            if kind == "thumb":
                stem += f"-{rng.choice((150, 300, 768))}x{rng.choice((150, 200, 300, 512))}"
            path = f"wp-content/uploads/{rng.choice(months)}/{stem}.{ext}"
        add(path, kind, size)
        used_media += size

    empty_dirs = ["wp-content/upgrade", "wp-content/cache", "wp-content/uploads/wc-logs"]
    theme0 = f"wp-content/themes/{themes[0]}"
    symlinks = [  # (link path, target relative to the link's directory)
        ("wp-content/uploads/current", "2024/12"),
        ("wp-content/themes/active", themes[0]),
        ("favicon.ico", f"{theme0}/assets/favicon.ico"),
        (f"{theme0}/style-rtl.css", "style.css"),
        ("wp-content/plugins/latest", plugins[0]),
    ]
    add(f"{theme0}/style.css", "css", 8000)
    add(f"{theme0}/assets/favicon.ico", "png", 4286)
    return entries, empty_dirs, symlinks


# ---------------------------------------------------------------------------
# the other kinds (issue 12, point 6): a CMS with caches, and the text-only
# webroot of an ADT host whose media live in S3 (PERSIST_ASSETS_TO_DATASTORE=1)

KINDS = ("mixed", "cms", "text")
DEFAULT_CMS_FILES = 300_000
DEFAULT_TEXT_SIZE = "400MiB"
Plan = tuple[list[Entry], list[str], list[tuple[str, str]]]


class _Planner:
    """Entries with unique paths and fixed mtimes, drawn from one rng."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entries: list[Entry] = []
        self.used: set[str] = set()
        self.bytes = 0

    def add(self, path: str, kind: str, size: int) -> None:
        base, dot, ext = path.rpartition(".")
        i = 2
        while path in self.used:
            path = f"{base}-{i}{dot}{ext}"
            i += 1
        self.used.add(path)
        self.entries.append(Entry(path, kind, size, BASE_MTIME + self.rng.randrange(0, 3 * 365 * 86400)))
        self.bytes += size

    def full(self, files: int | None, budget: int | None, start: tuple[int, int]) -> bool:
        if files is not None and len(self.entries) - start[0] >= files:
            return True
        return budget is not None and self.bytes - start[1] >= budget


def _small_size(rng: random.Random, median: int) -> int:
    """A few hundred bytes to a few KB, as cache entries and small sources are."""
    return int(min(24_000, max(120, rng.lognormvariate(0, 0.9) * median)))


def _add_code(p: _Planner, files: int | None, budget: int | None, scale: float) -> None:
    """Core, theme and plugin sources in deep vendor trees; ``scale`` shrinks the sizes."""
    rng = p.rng
    roots = ["wp-admin/includes", "wp-includes/js/dist/vendor", "wp-includes/blocks/navigation",
             "wp-includes/rest-api/endpoints", "wp-includes/sodium_compat/src/Core/Curve25519/Ge"]
    for i in range(60):
        plug = f"wp-content/plugins/{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}"
        vendor = f"{plug}/vendor/{rng.choice(WORDS)}/{rng.choice(WORDS)}-{rng.choice(WORDS)}/src"
        roots += [plug, f"{plug}/includes/admin", f"{plug}/assets/js/build",
                  f"{vendor}/{rng.choice(WORDS).title()}", f"{vendor}/{rng.choice(WORDS).title()}/"
                  f"{rng.choice(WORDS).title()}/{rng.choice(WORDS).title()}"]
    for i in range(6):
        theme = f"wp-content/themes/{rng.choice(WORDS)}-{i}"
        roots += [theme, f"{theme}/template-parts/blocks", f"{theme}/assets/css/components"]
    langs, weights = ("php", "js", "css", "html", "json", "po", "svg"), (50, 22, 12, 3, 5, 4, 4)
    median = {"php": 5000, "js": 6000, "css": 4000, "html": 3000, "json": 1500, "po": 9000,
              "svg": 2000}
    start = (len(p.entries), p.bytes)
    while not p.full(files, budget, start):
        lang = rng.choices(langs, weights)[0]
        stem = _ident(rng, "kebab" if lang != "php" else rng.choice(("kebab", "snake")))
        p.add(f"{rng.choice(roots)}/{stem}.{TEXT_EXT[lang]}", lang,
              _small_size(rng, int(median[lang] * scale)))


CACHES = {  # what a CMS's caches hold: (language, median size, weight)
    "page": ("html", 2500, 25),       # full-page cache, one index.html per URL
    "fragment": ("html", 700, 20),    # block and fragment cache
    "object": ("php", 500, 30),       # object cache: serialized arrays in .php files
    "twig": ("php", 1800, 15),        # compiled templates
    "minify": ("js", 3000, 10),       # minified, concatenated assets (js or css)
}


def _add_caches(p: _Planner, files: int | None, budget: int | None) -> None:
    """wp-content/cache/...: hashed fan-out directories and per-URL page trees."""
    rng = p.rng
    kinds = list(CACHES)
    weights = [CACHES[k][2] for k in kinds]
    hosts = ["www.example.org", "example.org", "shop.example.org"]
    sections = [rng.choice(WORDS) for _ in range(40)]
    start = (len(p.entries), p.bytes)
    while not p.full(files, budget, start):
        kind = rng.choices(kinds, weights)[0]
        lang, median, _w = CACHES[kind]
        h = f"{rng.getrandbits(128):032x}"
        if kind == "page":
            slug = _ident(rng, "kebab")
            path = (f"wp-content/cache/page/{rng.choice(hosts)}/{rng.choice(sections)}/"
                    f"{rng.randint(2019, 2024)}/{rng.randint(1, 12):02d}/{slug}/index.html")
        elif kind == "fragment":
            path = f"wp-content/cache/blocks/{h[:2]}/{h}.html"
        elif kind == "object":
            path = f"wp-content/cache/object/{rng.choice(sections)}/{h[:2]}/{h}.php"
        elif kind == "twig":
            path = f"wp-content/cache/twig/{h[:2]}/{h}.php"
        else:
            lang = rng.choice(("js", "css"))
            path = f"wp-content/cache/minify/{h[:12]}.min.{lang}"
        p.add(path, lang, _small_size(rng, median))


def make_cms_plan(files: int, seed: int) -> Plan:
    """``files`` small files: 30% sources, 70% cache entries, deep directories."""
    p = _Planner(random.Random(f"webroot-cms/{files}/{seed}/{GEN_VERSION}"))
    for name in ("index.php", "wp-config.php", "wp-load.php", ".htaccess"):
        p.add(name, "php", 1200)
    _add_code(p, int(files * 0.3) - len(p.entries), None, scale=0.25)
    _add_caches(p, files - len(p.entries), None)
    return p.entries, ["wp-content/upgrade", "wp-content/cache/tmp"], []


def make_text_plan(total: int, seed: int) -> Plan:
    """``total`` bytes of code (75%) and cached pages (25%), no media at all."""
    p = _Planner(random.Random(f"webroot-textonly/{total}/{seed}/{GEN_VERSION}"))
    for name in ("index.php", "wp-config.php", "wp-load.php", ".htaccess"):
        p.add(name, "php", 1200)
    _add_code(p, None, int(total * 0.75) - p.bytes, scale=1.0)
    _add_caches(p, None, total - p.bytes)
    # the mount point of the media, left empty as the exclude leaves it
    return p.entries, ["wp-content/uploads", "wp-content/upgrade"], []


# ---------------------------------------------------------------------------
# writing


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n > 0 else b""


def generate(dest: Path, total: int, seed: int, text_fraction: float) -> dict[str, object]:
    entries, empty_dirs, symlinks = make_plan(total, seed, text_fraction)
    stats = write_plan(dest, entries, empty_dirs, symlinks, seed)
    stats.update(requested_bytes=total, text_fraction=text_fraction)
    return stats


def write_plan(dest: Path, entries: list[Entry], empty_dirs: list[str],
               symlinks: list[tuple[str, str]], seed: int) -> dict[str, object]:
    t0 = time.monotonic()
    text_rng = random.Random(f"webroot-text/{seed}/{GEN_VERSION}")
    maker = TextMaker(text_rng)
    media_rng = random.Random(f"webroot-media/{seed}/{GEN_VERSION}")
    dirs: set[str] = set()
    nbytes = {"text": 0, "media": 0}
    nfiles = {"text": 0, "media": 0}
    chunk = 1 << 20
    for e in entries:
        p = dest / e.path
        d = str(p.parent)
        if d not in dirs:
            p.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(d)
        with open(p, "wb") as f:
            if e.kind in LANGS:
                f.write(maker.make(text_rng, e.kind, e.path, e.size))
                nbytes["text"] += e.size
                nfiles["text"] += 1
            else:
                magic = MEDIA[e.kind][0][: e.size]
                f.write(magic)
                left = e.size - len(magic)
                while left > 0:
                    n = min(chunk, left)
                    f.write(_random_bytes(media_rng, n))
                    left -= n
                nbytes["media"] += e.size
                nfiles["media"] += 1
        os.utime(p, (e.mtime, e.mtime))
    for d in empty_dirs:
        (dest / d).mkdir(parents=True, exist_ok=True)
    for link, target in symlinks:
        lp = dest / link
        lp.parent.mkdir(parents=True, exist_ok=True)
        if not (lp.parent / target).exists():
            (lp.parent / target).mkdir(parents=True, exist_ok=True)
        os.symlink(target, lp)
        os.utime(lp, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    # directory mtimes last, deepest first
    alldirs = sorted({str(p) for p in dest.rglob("*") if p.is_dir() and not p.is_symlink()}
                     | {str(dest)}, key=lambda s: -s.count("/"))
    for d in alldirs:
        os.utime(d, (BASE_MTIME, BASE_MTIME))
    return {
        "generator_version": GEN_VERSION,
        "seed": seed,
        "files": nfiles["text"] + nfiles["media"],
        "text_files": nfiles["text"],
        "media_files": nfiles["media"],
        "bytes": nbytes["text"] + nbytes["media"],
        "text_bytes": nbytes["text"],
        "media_bytes": nbytes["media"],
        "directories": len(alldirs),
        "symlinks": len(symlinks),
        "seconds": round(time.monotonic() - t0, 2),
    }


def tree_name(total: int, seed: int, text_fraction: float) -> str:
    tf = f"-t{round(text_fraction * 100)}" if abs(text_fraction - 0.15) > 1e-9 else ""
    return f"webroot-{fmt_size(total)}-s{seed}{tf}-v{GEN_VERSION}"


def ensure_tree(total: int, seed: int = 1, text_fraction: float = 0.15, force: bool = False,
                cache: Path = CACHE, quiet: bool = False) -> tuple[Path, dict[str, object]]:
    """Return (path, stats) of the cached mixed tree, generating it first if needed."""
    return _ensure(tree_name(total, seed, text_fraction),
                   lambda dest: generate(dest, total, seed, text_fraction), force, cache, quiet)


def ensure_kind(kind: str, size: int | None = None, files: int | None = None, seed: int = 1,
                force: bool = False, cache: Path = CACHE, quiet: bool = False
                ) -> tuple[Path, dict[str, object]]:
    """(path, stats) of a tree of one of KINDS: ``mixed`` and ``text`` by ``size``
    (bytes), ``cms`` by ``files``; generated first if not cached."""
    if kind == "mixed":
        return ensure_tree(size or parse_size("200MiB"), seed, force=force, cache=cache, quiet=quiet)
    if kind == "cms":
        n = files or DEFAULT_CMS_FILES
        plan = make_cms_plan
        name, arg = f"cms-{n}f-s{seed}-v{GEN_VERSION}", n
    elif kind == "text":
        n = size or parse_size(DEFAULT_TEXT_SIZE)
        plan = make_text_plan
        name, arg = f"text-{fmt_size(n)}-s{seed}-v{GEN_VERSION}", n
    else:
        raise ValueError(f"unknown tree kind {kind!r} (known: {', '.join(KINDS)})")

    def make(dest: Path) -> dict[str, object]:
        stats = write_plan(dest, *plan(arg, seed), seed)
        stats.update(kind=kind, requested=arg)
        return stats

    return _ensure(name, make, force, cache, quiet)


def _ensure(name: str, make: Callable[[Path], dict[str, object]], force: bool, cache: Path,
            quiet: bool) -> tuple[Path, dict[str, object]]:
    dest = cache / name
    meta = cache / f"{name}.json"
    if dest.is_dir() and meta.is_file() and not force:
        return dest, json.loads(meta.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if not quiet:
        print(f"gen_webroot: generating {name} ...", file=sys.stderr)
    stats = make(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    meta.unlink(missing_ok=True)
    os.rename(tmp, dest)
    meta.write_text(json.dumps(stats, indent=2) + "\n")
    if not quiet:
        print(f"gen_webroot: {stats['files']} files ({stats['text_files']} text, "
              f"{stats['media_files']} media), {stats['bytes']} bytes in {stats['seconds']} s",
              file=sys.stderr)
    return dest, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=KINDS, default="mixed",
                    help="mixed: code and media by --size (the 1 GiB bench tree); cms: --files "
                         "small files, sources and caches; text: --size of code and cached "
                         "pages, media excluded")
    ap.add_argument("--text-only", dest="kind", action="store_const", const="text",
                    help="the same as --kind text")
    ap.add_argument("--size", help=f"total bytes of regular files (mixed: 200MiB, text: "
                                   f"{DEFAULT_TEXT_SIZE}; 2GiB)")
    ap.add_argument("--files", type=int, help=f"number of files (cms: {DEFAULT_CMS_FILES})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--text-fraction", type=float, default=0.15,
                    help="mixed: share of the bytes in text (code) files; the rest is media")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where trees are kept")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    a = ap.parse_args()
    try:
        total = parse_size(a.size) if a.size else None
    except ValueError as e:
        ap.error(str(e))
    if not 0 <= a.text_fraction <= 1:
        ap.error("--text-fraction must be within 0..1")
    if a.files is not None and (a.kind != "cms" or a.files < 1):
        ap.error("--files goes with --kind cms, and is at least 1")
    if a.size and a.kind == "cms":
        ap.error("--kind cms is sized by --files, not --size")
    if a.kind == "mixed":
        path, _stats = ensure_tree(total or parse_size("200MiB"), a.seed, a.text_fraction,
                                   a.force, a.cache)
    else:
        path, _stats = ensure_kind(a.kind, total, a.files, a.seed, a.force, a.cache)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
