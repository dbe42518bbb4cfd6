#!/usr/bin/env python3
"""Extracts plain English text from Debian text packages into a train / held-out split (Python stdlib only).

Each source yields documents (a Bible chapter, a group of dictionary entries, one manual page or chapter).
Markup is stripped (RST, POD, AsciiDoc, HTML, dictd), code listings are dropped, hard-wrapped paragraphs are
re-flowed to one line, and text is normalised (NFC, no control characters, single blank lines). Documents are
written separated by an empty line pair ("\\n\\n\\n" never occurs inside a document), so
ember-tokenize-corpus can give each document its own BOS, and the .txt files stay readable for ember-perplexity.

Held-out: a document goes there when sha1(source/id) % 100 < --heldout-pct, so the split is stable whatever
else changes. The training side is capped per source (--budget-chars, --share) so no one source dominates.

Usage: extract.py --out DIR [--budget-chars 80000000] [--heldout-pct 1] [--only SOURCE,...] [--list]
"""
import argparse
import glob
import gzip
import hashlib
import html.parser
import json
import os
import re
import subprocess
import sys
import unicodedata

# ---------------------------------------------------------------------------------------------------------------
# Normalisation shared by every source.

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_LIST_ITEM = re.compile(r"^([-*+\u2022]|\d+[.)]|#\.|[a-z][.)])\s")


def reflow(text):
    """Joins hard-wrapped lines of each paragraph into one line; list items start new lines."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [l.strip() for l in para.split("\n") if l.strip()]
        if not lines:
            continue
        joined = [lines[0]]
        for l in lines[1:]:
            if _LIST_ITEM.match(l):
                joined.append(l)
            else:
                joined[-1] += " " + l
        out.append("\n".join(re.sub(r"[ \t]+", " ", j) for j in joined))
    return "\n\n".join(out)


def normalise(text):
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _CTRL.sub("", text)
    text = "\n".join(l.rstrip() for l in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)  # "\n\n\n" is the document separator
    return text.strip()


# ---------------------------------------------------------------------------------------------------------------
# Markup strippers.

_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+:._])\1{2,}\s*$")
_SIMPLE_TABLE = re.compile(r"^\s*=+( +=+)+\s*$")


def strip_rst(text):
    """reStructuredText (Sphinx) to plain text: drops directives other than admonitions and API descriptions,
    literal blocks, doctests, tables and comments; keeps the words of inline markup."""
    keep_body = {"note", "warning", "tip", "important", "seealso", "attention", "caution", "hint", "danger",
                  "error", "admonition", "function", "method", "class", "attribute", "data", "exception",
                  "decorator", "classmethod", "staticmethod", "describe", "option", "envvar", "versionadded",
                  "versionchanged", "deprecated", "glossary", "rubric", "topic", "sidebar", "container", "only"}
    lines = text.split("\n")
    out = []
    i = 0
    skip_indent = None  # drop lines indented more than this (a dropped block's body)
    literal_next = False
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if literal_next:
            if not stripped:
                continue
            literal_next = False
            if indent > 0 or stripped.startswith(">>>"):
                skip_indent = indent - 1
                continue
        if _ADORNMENT.match(line) or _SIMPLE_TABLE.match(line):
            continue
        grid_row = stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1
        if stripped.startswith(("+-", "+=")) or grid_row:
            continue
        if stripped.startswith(">>>"):
            skip_indent = indent - 1
            continue
        m = re.match(r"^(\s*)\.\.\s+(?:([\w:-]+)::(.*))?", line)
        if m:
            name = (m.group(2) or "").split(":")[-1]
            if m.group(2) and name in keep_body:
                arg = m.group(3).strip()
                if name in ("versionadded", "versionchanged", "deprecated"):
                    arg = ""
                if arg and name not in ("only", "container"):
                    out.append(m.group(1) + arg)
                continue
            skip_indent = indent
            continue
        if stripped == "::":
            literal_next = True
            continue
        if stripped.endswith("::"):
            line = line.rstrip()[:-1]
            literal_next = True
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r":[\w:+-]+:`([^`<]*?)\s*<[^`>]*>`", r"\1", text)            # :ref:`text <target>`
    text = re.sub(r":[\w:+-]+:`~?(?:[\w.]*\.)?([^`]*?)`", r"\1", text)           # :func:`~a.b.c` -> c
    text = re.sub(r"`([^`<]+?)\s*<[^`>]*>`__?", r"\1", text)                     # `text <url>`_
    text = re.sub(r"``(.+?)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_{0,2}", r"\1", text)
    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|(\w[\w -]*)\|", r"\1", text)
    text = re.sub(r"\\([*`_|\\])", r"\1", text)
    return reflow(text)


def strip_pod(text):
    """Perl POD to plain text: headings and items kept, verbatim (code) paragraphs and =begin blocks dropped."""
    out = []
    in_begin = False
    for para in re.split(r"\n\s*\n", text):
        if not para.strip():
            continue
        if in_begin:
            if para.startswith("=end"):
                in_begin = False
            continue
        if para.startswith("="):
            cmd, _, rest = para.partition(" ")
            if cmd == "=begin":
                in_begin = True
            elif cmd.startswith("=head") or cmd == "=item":
                rest = re.sub(r"^[*\s]+$", "", rest.strip())
                if rest:
                    out.append(rest)
            continue
        if para[0] in " \t":
            continue  # verbatim paragraph: code
        out.append(para)
    text = "\n\n".join(out)
    escapes = {"lt": "<", "gt": ">", "sol": "/", "verbar": "|", "quot": '"', "amp": "&", "apos": "'"}

    def esc(m):
        e = m.group(1)
        if e in escapes:
            return escapes[e]
        try:
            return chr(int(e, 16) if e.lower().startswith("0x") else int(e))
        except ValueError:
            return ""

    text = re.sub(r"E<(\w+)>", esc, text)
    text = re.sub(r"[A-Z]<<+\s+(.*?)\s+>>+", r"\1", text, flags=re.S)
    for _ in range(4):  # nested codes, innermost first
        text = re.sub(r"L<([^<>|]*)\|[^<>]*>", r"\1", text)
        text = re.sub(r"L<([^<>/]*)/\"?([^<>\"]*)\"?>", lambda m: m.group(2) or m.group(1), text)
        text = re.sub(r"Z<>", "", text)
        text = re.sub(r"[A-Z]<([^<>]*)>", r"\1", text)
    return reflow(text)


def strip_asciidoc(text):
    """AsciiDoc (git's manuals) to plain text: listing, literal, comment blocks and tables dropped."""
    out = []
    drop_until = None
    for line in text.split("\n"):
        s = line.strip()
        if drop_until is not None:
            if s == drop_until:
                drop_until = None
            continue
        if re.fullmatch(r"-{4,}|\.{4,}|/{4,}|\|={3,}", s):
            drop_until = s
            continue
        if _ADORNMENT.match(line) or re.fullmatch(r"[=*_]{4,}", s):
            continue
        if s == "+" or re.match(r"^(:[\w-]+:|\[.*\]$|include::|ifdef::|ifndef::|endif::)", s):
            continue
        line = re.sub(r"^=+\s+", "", line)
        line = re.sub(r"^\.(?=\w)", "", line)
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r"linkgit:([\w.-]+)\[(\d)\]", r"\1(\2)", text)
    text = re.sub(r"(?:link|https?|mailto):(\S*?)\[([^\]]*)\]", lambda m: m.group(2) or m.group(1), text)
    text = text.replace("{litdd}", "--").replace("{tilde}", "~").replace("{caret}", "^").replace("{apostrophe}", "'")
    text = re.sub(r"`([^`\n]+)`", r"\1", text)
    text = re.sub(r"(?<![\w'])'([^'\n]+?)'(?![\w'])", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(\S(?:[^*\n]*?\S)?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"^(.*?)::\s*$", r"\1:", text, flags=re.M)
    return reflow(text)


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page, one paragraph per block element; skips code, navigation and tables of
    contents."""

    BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "tr", "table", "blockquote",
             "section", "article", "ul", "ol", "dl", "br", "hr", "title", "td", "th", "caption", "figcaption"}
    SKIP_TAGS = {"script", "style", "pre", "head", "svg", "code_block"}
    SKIP_CLASSES = ("navheader", "navfooter", "toc", "sphinxsidebar", "related", "footer", "docnav",
                    "breadcrumb", "navigation", "programlisting", "screen", "synopsis", "highlight", "headerlink",
                    "indexterm", "legalnotice", "annotations")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.skip_tag = None
        self.skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        cls = dict(attrs).get("class") or ""
        if tag in self.SKIP_TAGS or any(c in cls for c in self.SKIP_CLASSES):
            if tag not in ("br", "hr", "img", "meta", "link", "input"):
                self.skip_tag, self.skip_depth = tag, 1
            return
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self.skip_tag is None:
            self.parts.append(re.sub(r"\s+", " ", data))


def strip_html(text):
    p = _HTMLText()
    p.feed(text)
    p.close()
    paras = [re.sub(r" +", " ", x).strip() for x in "".join(p.parts).split("\n\n")]
    return "\n\n".join(x for x in paras if x)


# ---------------------------------------------------------------------------------------------------------------
# Sources: each yields (doc_id, text) for one Debian package. Licences are in README.md.

def read_any(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def src_kjv():
    """King James Bible (bible-kjv + bible-kjv-text): one document per chapter, one verse per line."""
    out = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], check=True, capture_output=True).stdout
    doc_id, verses = None, []
    for line in out.decode("utf-8", "replace").split("\n"):
        m = re.match(r"^\s+\d+\s+(.*)$", line)
        if m:
            verses.append(m.group(1).strip())
        elif line.strip():
            if doc_id and verses:
                yield doc_id, doc_id + "\n\n" + "\n".join(verses)
            doc_id, verses = line.strip(), []
    if doc_id and verses:
        yield doc_id, doc_id + "\n\n" + "\n".join(verses)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_entries(name):
    """The entries of a dictd database in file order (deduplicated: several headwords share one entry)."""
    data = gzip.open("/usr/share/dictd/%s.dict.dz" % name).read()

    def num(s):
        v = 0
        for c in s:
            v = v * 64 + _B64.index(c)
        return v

    spans = set()
    with open("/usr/share/dictd/%s.index" % name, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and not parts[0].startswith("00-database") and not parts[0].startswith("00database"):
                spans.add((num(parts[1]), num(parts[2])))
    for off, n in sorted(spans):
        yield data[off:off + n].decode("utf-8", "replace")


def _dictd_docs(name, clean, per_doc):
    group = []
    for i, entry in enumerate(_dictd_entries(name)):
        entry = clean(entry)
        if entry:
            group.append(entry)
        if len(group) == per_doc:
            yield "%s-%06d" % (name, i), "\n\n".join(group)
            group = []
    if group:
        yield "%s-end" % name, "\n\n".join(group)


_GCIDE_SPECIAL = {"ae": "\u00e6", "AE": "\u00c6", "oe": "\u0153", "OE": "\u0152", "imac": "\u012b",
                  "aum": "\u00e4", "eth": "\u00f0", "th": "\u00fe", "deg": "\u00b0", "sect": "\u00a7",
                  "root": "\u221a", "ng": "ng", "add": "", "asl": "", "udd": "\u00fc", "ddot": "", "para": "\u00b6"}
_GCIDE_MARK = {"=": "\u0304", "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303",
               ",": "\u0327", ".": "", "-": ""}
_GCIDE_TAG = re.compile(r"\[(?:1913 Webster|Webster 1913|WordNet|PJC|Century|Chambers|RN|JC|DC|PCG|MW)[^\]\n]*\]")


def _gcide_char(m):
    """GCIDE's ASCII escapes for accented letters: [=a] -> a with macron, ['e] -> e acute, [i^] -> i (breve)."""
    body = m.group(1)
    if body in _GCIDE_SPECIAL:
        return _GCIDE_SPECIAL[body]
    mm = re.fullmatch(r"([=\-`'^\".~,])([a-zA-Z]{1,2})|([a-zA-Z]{1,2})\^", body)
    if not mm:
        return m.group(0)
    if mm.group(3):
        return mm.group(3)
    return mm.group(2)[0] + _GCIDE_MARK[mm.group(1)] + mm.group(2)[1:]


def _clean_gcide(e):
    e = _GCIDE_TAG.sub("", e)
    e = re.sub(r"\\[^\\\n]*\\,?", "", e)                         # headword pronunciation \A*buse"\
    e = re.sub(r" ?\((?=[^()\s]*[*\"])[^()\s]{2,80}\)", "", e)      # (a*b[i^]l"[i^]*t[y^])
    e = re.sub(r"\[([^\]\s]{1,4})\]", _gcide_char, e)
    e = re.sub(r"[{}]", "", e)
    e = re.sub(r"\s--(?=[A-Z])", " -- ", e)
    return reflow(e).replace(" ,", ",")


def _clean_dict(e):
    return reflow(re.sub(r"[{}]", "", e))


def src_gcide():
    """GCIDE (dict-gcide, Webster's 1913 with additions): 40 entries per document."""
    return _dictd_docs("gcide", _clean_gcide, 40)


def src_devil():
    """Ambrose Bierce's The Devil's Dictionary (dict-devil): 20 entries per document."""
    return _dictd_docs("devil", _clean_dict, 20)


def src_jargon():
    """The Jargon File (dict-jargon): 20 entries per document."""
    return _dictd_docs("jargon", _clean_dict, 20)


def _files(patterns, exclude=()):
    paths = sorted({p for pat in patterns for p in glob.glob(pat, recursive=True)})
    return [p for p in paths if not any(x in p for x in exclude)]


def src_linux():
    """The Linux kernel's Documentation/ (linux-doc-6.1), RST and text files, without translations,
    device-tree bindings and ABI listings."""
    root = "/usr/share/doc/linux-doc-6.1/Documentation/"
    for p in _files([root + "**/*.rst.gz", root + "**/*.rst", root + "**/*.txt.gz", root + "**/*.txt"],
                    ("/translations/", "/devicetree/", "/ABI/", "/sphinx", "/output/")):
        yield p[len(root):], strip_rst(read_any(p))


def src_python():
    """The Python 3.11 documentation (python3.11-doc), RST sources, without the changelog."""
    root = "/usr/share/doc/python3.11/html/_sources/"
    for p in _files([root + "**/*.rst.txt"], ("whatsnew/changelog",)):
        yield p[len(root):], strip_rst(read_any(p))


def src_devref():
    """Debian Developer's Reference (developers-reference), RST sources."""
    root = "/usr/share/developers-reference/_sources/"
    for p in _files([root + "*.rst.txt"], ("index.rst",)):
        yield p[len(root):], strip_rst(read_any(p))


def src_postgresql():
    """The PostgreSQL 15 manual (postgresql-doc-15), HTML, one page per document."""
    root = "/usr/share/doc/postgresql-doc-15/html/"
    for p in _files([root + "*.html"], ("bookindex", "/index.html")):
        yield p[len(root):], strip_html(read_any(p))


def src_handbook():
    """The Debian Administrator's Handbook (debian-handbook), English HTML."""
    root = "/usr/share/doc/debian-handbook/html/en-US/"
    for p in _files([root + "*.html"], ("index.html", "ix01")):
        yield p[len(root):], strip_html(read_any(p))


def src_debref():
    """Debian Reference (debian-reference-en), English HTML."""
    root = "/usr/share/debian-reference/"
    for p in _files([root + "*.en.html"], ("index.en.html",)):
        yield p[len(root):], strip_html(read_any(p))


def src_perl():
    """Perl's manuals (perl-doc), POD."""
    for p in _files(["/usr/share/perl/*/pod/*.pod"]):
        yield os.path.basename(p), strip_pod(read_any(p))


def src_git():
    """Git's manuals (git-doc), AsciiDoc sources."""
    root = "/usr/share/doc/git-doc/"
    for p in _files([root + "*.txt", root + "howto/*.txt", root + "technical/*.txt"], ("RelNotes",)):
        yield p[len(root):], strip_asciidoc(read_any(p))


# name -> (function, Debian packages, licence, share of the training budget at most)
SOURCES = {
    "kjv": (src_kjv, "bible-kjv bible-kjv-text", "public domain (text); bible-kjv tool GPL-2+", 1.0),
    "gcide": (src_gcide, "dict-gcide", "GPL-2+", 0.28),
    "devil": (src_devil, "dict-devil", "public domain", 1.0),
    "jargon": (src_jargon, "dict-jargon", "public domain", 1.0),
    "linux": (src_linux, "linux-doc-6.1", "GPL-2", 0.25),
    "python": (src_python, "python3.11-doc", "PSF-2.0", 0.30),
    "postgresql": (src_postgresql, "postgresql-doc-15", "PostgreSQL (BSD-like)", 0.30),
    "handbook": (src_handbook, "debian-handbook", "GPL-2+ or CC-BY-SA-3.0", 1.0),
    "debref": (src_debref, "debian-reference-en", "GPL-2+", 1.0),
    "devref": (src_devref, "developers-reference", "GPL-2", 1.0),
    "perl": (src_perl, "perl-doc", "GPL-1+ or Artistic", 0.15),
    "git": (src_git, "git-doc", "GPL-2", 1.0),
}


def doc_hash(source, doc_id):
    return int(hashlib.sha1(("%s/%s" % (source, doc_id)).encode()).hexdigest()[:12], 16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (train.txt, heldout.txt, extract.json)")
    ap.add_argument("--budget-chars", type=int, default=68_000_000,
                    help="characters of training text at most, over all sources")
    ap.add_argument("--heldout-pct", type=float, default=1.0, help="percent of documents held out")
    ap.add_argument("--min-chars", type=int, default=200, help="documents shorter than this are dropped")
    ap.add_argument("--only", default="", help="comma-separated sources (default: all)")
    ap.add_argument("--list", action="store_true", help="print the sources and their packages and exit")
    args = ap.parse_args()
    if args.list:
        for name, (_, pkgs, lic, share) in SOURCES.items():
            print("%-11s %-28s %-38s share<=%.2f" % (name, pkgs, lic, share))
        return
    names = [n for n in args.only.split(",") if n] or list(SOURCES)
    for n in names:
        if n not in SOURCES:
            sys.exit("extract.py: unknown source '%s' (expected one of %s)" % (n, ", ".join(SOURCES)))
    os.makedirs(args.out, exist_ok=True)

    train, heldout, stats = [], [], {}
    for name in names:
        fn, pkgs, lic, share = SOURCES[name]
        docs = []
        for doc_id, text in fn():
            text = normalise(text)
            if len(text) >= args.min_chars:
                docs.append((doc_hash(name, doc_id), doc_id, text))
        if not docs:
            sys.exit("extract.py: source '%s' (packages %s) gave no documents: is it installed?" % (name, pkgs))
        docs.sort()  # hash order: a deterministic shuffle, so a capped source keeps a random subset
        cut = args.heldout_pct / 100.0
        h = [d for d in docs if (d[0] % 10000) < cut * 10000]
        t = [d for d in docs if (d[0] % 10000) >= cut * 10000]
        cap = int(share * args.budget_chars)
        kept, n_chars = [], 0
        for d in t:
            if n_chars >= cap:
                break
            kept.append(d)
            n_chars += len(d[2])
        train += [(name,) + d for d in kept]
        heldout += [(name,) + d for d in h]
        stats[name] = {"packages": pkgs, "licence": lic, "docs_total": len(docs),
                       "chars_total": sum(len(d[2]) for d in docs), "train_docs": len(kept),
                       "train_chars": n_chars, "heldout_docs": len(h), "heldout_chars": sum(len(d[2]) for d in h)}
        print("extract: %-11s %6d docs %11d chars -> train %6d docs %11d chars, held out %4d docs" %
              (name, len(docs), stats[name]["chars_total"], len(kept), n_chars, len(h)), file=sys.stderr)

    total = sum(len(d[3]) for d in train)
    if total > args.budget_chars:  # the per-source shares may add up to more than the budget: trim the largest
        train.sort(key=lambda d: d[1])
        keep, n = [], 0
        for d in train:
            if n + len(d[3]) <= args.budget_chars:
                keep.append(d)
                n += len(d[3])
        train = keep
    # Mixed order (by hash), so any prefix of the files is a sample of every source.
    train.sort(key=lambda d: d[1])
    heldout.sort(key=lambda d: d[1])
    for fname, docs in (("train.txt", train), ("heldout.txt", heldout)):
        with open(os.path.join(args.out, fname), "w", encoding="utf-8") as f:
            f.write("\n\n\n".join(d[3] for d in docs))
            f.write("\n")
    summary = {"sources": stats, "train_docs": len(train), "train_chars": sum(len(d[3]) for d in train),
               "heldout_docs": len(heldout), "heldout_chars": sum(len(d[3]) for d in heldout)}
    for name in stats:
        stats[name]["train_docs_final"] = sum(1 for d in train if d[0] == name)
    with open(os.path.join(args.out, "extract.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("extract: train %d docs %d chars, held out %d docs %d chars" %
          (summary["train_docs"], summary["train_chars"], summary["heldout_docs"], summary["heldout_chars"]),
          file=sys.stderr)


if __name__ == "__main__":
    main()
