"""A sphinx-gallery image scraper for PNG files an example writes to disk.

``cytorch.viz`` draws on matplotlib figures that pyplot never sees (so it changes no global
state), which sphinx-gallery's own matplotlib scraper cannot find.  The examples write their
pictures as PNG files instead, into the folder ``conf.py`` passes them; after each code block
this scraper moves the new ones into the gallery, in the order they were written.
This is the "detect image files on disk" scraper of sphinx-gallery's documentation.
"""
import os
import shutil

from sphinx_gallery.scrapers import figure_rst


class PngScraper:
    def __init__(self, folder):
        self.folder = folder

    def __repr__(self):  # sphinx-gallery hashes its configuration by repr
        return f"PngScraper({self.folder!r})"

    def __call__(self, block, block_vars, gallery_conf):
        found = []
        for root, _, files in os.walk(self.folder):
            found += [os.path.join(root, f) for f in files if f.endswith(".png")]
        found.sort(key=os.path.getmtime)
        images = []
        for path, target in zip(found, block_vars["image_path_iterator"]):
            shutil.move(path, target)
            images.append(target)
        return figure_rst(images, gallery_conf["src_dir"])
