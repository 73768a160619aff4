"""Check a built documentation site: every internal link resolves, and a real browser renders it.

    python docs/check_site.py docs/_build/html [--browser chromium] [--screenshot PATH]

1. **Links**: every ``href`` and ``src`` of every HTML page that points inside the site must
   name an existing file, and its ``#fragment`` an ``id`` on that page.  External links
   (``http:``, ``mailto:``...) are not followed: CI has no network.
2. **A browser** (when ``--browser`` names one, e.g. Debian's ``chromium``): the gallery page of
   ``examples/visualize.py`` is loaded headless; the DOM after its scripts ran must show the
   example's pictures with their real sizes (an image that failed to load has width 0), and a
   screenshot of the home page must not be blank.

Exit status 0 when everything holds; otherwise 1, with one line per problem.
"""
import argparse
import html.parser
import os
import re
import subprocess
import sys
import tempfile
from urllib.parse import unquote, urldefrag, urlsplit


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append((tag, attrs[key]))


def parse(path, cache={}):
    if path not in cache:
        page = _Page()
        with open(path, encoding="utf-8") as f:
            page.feed(f.read())
        cache[path] = page
    return cache[path]


def check_links(root):
    """``(pages checked, [problem, ...])`` for the site under ``root``."""
    problems, pages = [], 0
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".html") or folder.startswith(os.path.join(root, "_static")):
                continue  # _static holds the theme's template fragments, not pages
            page_path = os.path.join(folder, name)
            pages += 1
            for tag, link in parse(page_path).links:
                parts = urlsplit(link)
                if parts.scheme or parts.netloc or link.startswith("//"):
                    continue  # external: not followed
                target, fragment = urldefrag(link)
                target = unquote(urlsplit(target).path)  # without ?query (cache busters)
                path = page_path if not target else os.path.normpath(
                    os.path.join(folder, target))
                if os.path.isdir(path):
                    path = os.path.join(path, "index.html")
                where = os.path.relpath(page_path, root)
                if not os.path.exists(path):
                    problems.append(f"{where}: <{tag}> {link!r}: no such file")
                elif fragment and path.endswith(".html") and fragment not in parse(path).ids:
                    problems.append(f"{where}: <{tag}> {link!r}: no id {fragment!r} on "
                                    f"{os.path.relpath(path, root)}")
    return pages, problems


def check_in_browser(root, browser, screenshot):
    """Problems seen by a headless browser (a list, empty when all is well)."""
    problems = []
    page = os.path.join(root, "auto_examples", "visualize.html")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--virtual-time-budget=5000"]
    # the DOM after the page's scripts ran, with each image's natural width written into it
    dom = subprocess.run(common + ["--dump-dom", "file://" + os.path.abspath(page)],
                         capture_output=True, text=True, timeout=120).stdout
    images = re.findall(r'<img [^>]*src="([^"]*images/sphx_glr_visualize_\d+\.png)"', dom)
    if len(images) < 3:
        problems.append(f"{page}: the browser shows {len(images)} gallery picture(s), expected "
                        f"the 3 that examples/visualize.py draws")
    if "cytorch" not in dom:
        problems.append(f"{page}: the browser's DOM does not mention cytorch")
    for src in images:
        if not os.path.exists(os.path.join(os.path.dirname(page), unquote(src))):
            problems.append(f"{page}: picture {src} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        shot = screenshot or os.path.join(tmp, "home.png")
        subprocess.run(common + ["--window-size=1280,900", f"--screenshot={shot}",
                                 "file://" + os.path.abspath(os.path.join(root, "index.html"))],
                       capture_output=True, timeout=120)
        if not os.path.exists(shot):
            return problems + [f"{browser} wrote no screenshot of index.html"]
        from PIL import Image  # matplotlib's dependency: the docs extra brings it
        with Image.open(shot) as image:
            colours = image.convert("L").getextrema()
            if image.size != (1280, 900) or colours[1] - colours[0] < 64:
                problems.append(f"the screenshot of index.html is {image.size[0]}x"
                                f"{image.size[1]} with grey levels {colours}: blank or broken")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a built documentation site.")
    parser.add_argument("root", help="the built HTML site, e.g. docs/_build/html")
    parser.add_argument("--browser", help="a headless-capable Chromium to render pages with")
    parser.add_argument("--screenshot", help="keep the home page's screenshot here")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.root, "index.html")):
        print(f"{args.root}: no index.html: build the site first", file=sys.stderr)
        return 1
    pages, problems = check_links(args.root)
    print(f"links: {pages} pages checked, {len(problems)} broken internal link(s)")
    if args.browser:
        seen = check_in_browser(args.root, args.browser, args.screenshot)
        print(f"browser ({args.browser}): {len(seen)} problem(s)")
        problems += seen
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
