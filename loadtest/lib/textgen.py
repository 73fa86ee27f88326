"""Deterministic, compressible text for the compression cells: pseudo-JavaScript
and an HTML documentation page, built from a seeded PRNG over a vocabulary of
identifiers, keywords, tags and English words. Nothing is downloaded.

The aim is text that compresses like real code and pages (gzip -6 about 3-5x),
not text that runs: random bytes do not compress at all and a repeated sentence
compresses 100x, and either would make the compression cells meaningless. Words
are drawn with a Zipf-like skew (a few very common, a long tail), identifiers are
camelCase pairs that a module reuses, as real code does. make(kind, size) returns
exactly `size` ASCII bytes; the same arguments always give the same bytes.
"""

import random

WORDS = """
item value index count total list result data node state event handler config
option request response header body buffer cache entry key name path file user
session token error message status code type mode flag level limit offset size
length width height color style theme layout view model store action payload
route query param filter sort order group page row column cell table form field
input output source target parent child element component render update create
delete remove insert append fetch load save parse format encode decode resolve
reject promise callback listener observer stream chunk range start end time date
timeout interval delay retry queue task worker job pool thread lock signal frame
context scope module export import default client server socket channel port host
""".split()
VERBS = """
get set has is make build create update handle process compute resolve validate
normalize render apply merge split find filter map reduce load init reset clear
register dispatch emit attach detach open close read write flush parse serialize
""".split()
KEYWORDS_COND = ["===", "!==", "<", ">", "<=", ">=", "&&", "||"]
STRINGS = """
invalid argument|not found|request failed|unexpected token|missing value|
timeout exceeded|connection closed|permission denied|already exists|
ready|loading|done|pending|idle|active|disabled|hidden|visible|selected|
application/json|text/plain|utf-8|GET|POST|PUT|DELETE|click|change|submit|keydown
""".replace("\n", "").split("|")
ENGLISH = """
the a of to and in is that for it as with be on not this by are or from at which
an have has can will if when each all one more other than then its may only new
server file request response client cache page time value data user first used
returns function method object default option path list number string error case
should must also into over after before while without between both same such any
""".split()
TAGS_INLINE = ["code", "em", "strong", "a", "span"]


def zipf_choice(rng, seq, s=1.1):
    """Element of seq, the first ones far more often (Zipf-like, exponent s)."""
    weights = zipf_choice.cache.get((len(seq), s))
    if weights is None:
        weights = [1 / (i + 1) ** s for i in range(len(seq))]
        acc, total = [], 0.0
        for w in weights:
            total += w
            acc.append(total)
        weights = zipf_choice.cache[(len(seq), s)] = acc
    return seq[rng.choices(range(len(seq)), cum_weights=weights)[0]]


zipf_choice.cache = {}


def camel(words):
    return words[0] + "".join(w.capitalize() for w in words[1:])


class JsGen:
    def __init__(self, rng):
        self.rng = rng
        # A module reuses a vocabulary of its own identifiers.
        self.names = list(dict.fromkeys(
            camel([rng.choice(WORDS), rng.choice(WORDS)]) for _ in range(160)))
        self.funcs = list(dict.fromkeys(
            camel([rng.choice(VERBS), rng.choice(WORDS)]) for _ in range(90)))
        rng.shuffle(self.names)

    def name(self):
        return zipf_choice(self.rng, self.names)

    def func(self):
        return zipf_choice(self.rng, self.funcs)

    def literal(self):
        r = self.rng.random()
        if r < 0.4:
            return str(self.rng.choice([0, 1, 2, 10, 16, 100, 1000, 1024])
                       if self.rng.random() < 0.7 else self.rng.randint(0, 99999))
        if r < 0.8:
            return '"' + zipf_choice(self.rng, STRINGS) + '"'
        return self.rng.choice(["null", "true", "false", "undefined", "[]", "{}"])

    def expr(self, depth=0):
        r = self.rng.random()
        if depth > 1 or r < 0.35:
            return self.name() if self.rng.random() < 0.6 else self.literal()
        if r < 0.55:
            return f"{self.name()}.{self.name()}"
        if r < 0.75:
            args = ", ".join(self.expr(depth + 1) for _ in range(self.rng.randint(0, 3)))
            return f"{self.func()}({args})"
        if r < 0.9:
            op = self.rng.choice(["+", "-", "*", "/", "%", "??"])
            return f"{self.expr(depth + 1)} {op} {self.expr(depth + 1)}"
        return f"this.{self.name()}"

    def cond(self):
        return f"{self.expr(1)} {self.rng.choice(KEYWORDS_COND)} {self.expr(1)}"

    def stmt(self, ind, depth):
        rng = self.rng
        p = "  " * ind
        r = rng.random()
        if depth < 2 and r < 0.15:
            body = self.block(ind + 1, depth + 1, rng.randint(1, 3))
            out = f"{p}if ({self.cond()}) {{\n{body}{p}}}"
            if rng.random() < 0.3:
                out += f" else {{\n{self.block(ind + 1, depth + 1, rng.randint(1, 2))}{p}}}"
            return out + "\n"
        if depth < 2 and r < 0.22:
            i, lst = rng.choice(["i", "j", "k"]), self.name()
            return (f"{p}for (let {i} = 0; {i} < {lst}.length; {i}++) {{\n"
                    f"{self.block(ind + 1, depth + 1, rng.randint(1, 3))}{p}}}\n")
        if depth < 2 and r < 0.27:
            return (f"{p}{self.name()}.forEach(({self.name()}) => {{\n"
                    f"{self.block(ind + 1, depth + 1, rng.randint(1, 2))}{p}}});\n")
        if depth < 2 and r < 0.3:
            return (f"{p}try {{\n{self.block(ind + 1, depth + 1, 2)}{p}}} catch (err) {{\n"
                    f"{p}  console.error(\"{zipf_choice(rng, STRINGS)}\", err);\n{p}}}\n")
        if r < 0.55:
            kw = rng.choice(["const", "const", "let"])
            return f"{p}{kw} {self.name()} = {self.expr()};\n"
        if r < 0.7:
            return f"{p}{self.name()}.{self.name()} = {self.expr()};\n"
        if r < 0.85:
            args = ", ".join(self.expr(1) for _ in range(rng.randint(0, 3)))
            return f"{p}{self.func()}({args});\n"
        if r < 0.92:
            return f"{p}// {' '.join(zipf_choice(rng, ENGLISH) for _ in range(rng.randint(3, 9)))}\n"
        return f"{p}return {self.expr()};\n"

    def block(self, ind, depth, n):
        return "".join(self.stmt(ind, depth) for _ in range(n))

    def function(self):
        rng = self.rng
        params = ", ".join(dict.fromkeys(self.name() for _ in range(rng.randint(0, 3))))
        doc = " ".join(zipf_choice(rng, ENGLISH) for _ in range(rng.randint(6, 14)))
        head = f"/**\n * {doc.capitalize()}.\n */\n"
        kind = rng.random()
        body = self.block(1, 0, rng.randint(3, 9))
        if kind < 0.5:
            return f"{head}export function {self.func()}({params}) {{\n{body}}}\n\n"
        if kind < 0.8:
            return f"{head}const {self.func()} = ({params}) => {{\n{body}}};\n\n"
        methods = "".join(
            f"  {self.func()}({params}) {{\n{self.block(2, 1, rng.randint(2, 5))}  }}\n\n"
            for _ in range(rng.randint(2, 4)))
        return (f"{head}export class {self.name().capitalize()} {{\n"
                f"  constructor({params}) {{\n{self.block(2, 1, 3)}  }}\n\n{methods}}}\n\n")

    def text(self, size):
        out = ['"use strict";\n',
               f'import {{ {", ".join(self.funcs[:6])} }} from "./util.js";\n\n']
        n = sum(map(len, out))
        while n < size:
            f = self.function()
            out.append(f)
            n += len(f)
        return "".join(out)


class HtmlGen:
    def __init__(self, rng):
        self.rng = rng
        self.js = JsGen(rng)   # code samples and identifiers in the prose

    def words(self, lo, hi):
        return " ".join(zipf_choice(self.rng, ENGLISH) for _ in range(self.rng.randint(lo, hi)))

    def sentence(self):
        rng = self.rng
        parts = [self.words(3, 8)]
        for _ in range(rng.randint(0, 2)):
            tag = rng.choice(TAGS_INLINE)
            inner = self.js.name() if tag == "code" else self.words(1, 3)
            if tag == "a":
                parts.append(f'<a href="/docs/{self.js.name()}.html">{inner}</a>')
            elif tag == "span":
                parts.append(f'<span class="term">{inner}</span>')
            else:
                parts.append(f"<{tag}>{inner}</{tag}>")
            parts.append(self.words(2, 7))
        return " ".join(parts).capitalize() + "."

    def para(self):
        return "<p>" + " ".join(self.sentence() for _ in range(self.rng.randint(2, 5))) + "</p>\n"

    def section(self, i):
        rng = self.rng
        sid = f"{self.js.name()}-{i}"
        out = [f'<section id="{sid}" class="doc-section">\n'
               f'<h2><a class="anchor" href="#{sid}">&#167;</a> {self.words(2, 5).title()}</h2>\n']
        for _ in range(rng.randint(1, 3)):
            out.append(self.para())
        r = rng.random()
        if r < 0.35:
            out.append('<pre class="code"><code class="language-js">'
                       + self.js.function().replace("&", "&amp;").replace("<", "&lt;")
                       .replace(">", "&gt;") + "</code></pre>\n")
        elif r < 0.65:
            rows = "".join(
                f'<tr><td><code>{self.js.name()}</code></td><td>{self.js.literal().strip(chr(34))}'
                f'</td><td>{self.words(4, 10)}</td></tr>\n' for _ in range(rng.randint(3, 8)))
            out.append('<table class="options">\n<thead><tr><th>name</th><th>default</th>'
                       f'<th>description</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n')
        else:
            items = "".join(f'<li class="item"><a href="#{self.js.name()}">{self.words(2, 6)}'
                            "</a></li>\n" for _ in range(rng.randint(3, 7)))
            out.append(f'<ul class="list">\n{items}</ul>\n')
        out.append("</section>\n")
        return "".join(out)

    def text(self, size):
        nav = "".join(f'<li><a href="/docs/{n}.html" class="nav-link">{n}</a></li>\n'
                      for n in self.js.names[:40])
        head = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                "<title>Reference - threadserve load test page</title>\n"
                '<link rel="stylesheet" href="/static/main.css">\n'
                '<script src="/static/app.js" defer></script>\n</head>\n<body>\n'
                f'<nav class="sidebar">\n<ul>\n{nav}</ul>\n</nav>\n<main class="content">\n')
        out, n, i = [head], len(head), 0
        while n < size:
            s = self.section(i)
            out.append(s)
            n += len(s)
            i += 1
        return "".join(out)


def make(kind, size, seed=20261201):
    """Exactly `size` bytes of pseudo-JavaScript ("js") or HTML ("html")."""
    rng = random.Random(f"{kind}-{seed}")
    gen = JsGen(rng) if kind == "js" else HtmlGen(rng)
    text = gen.text(size + 1).encode("ascii")
    tail = b"\n" if kind == "js" else b"\n</main></body></html>\n"
    return text[:size - len(tail)] + tail
