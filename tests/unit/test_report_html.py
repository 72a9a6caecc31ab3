"""The HTML report page: self-contained, escapes labels, links the pictures beside it."""

from html.parser import HTMLParser

from nbknn.naive_bayes.metrics import classification_metrics
from nbknn.naive_bayes.report_pictures import report_html


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.cells, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("link", "script") or (attrs.get("src") or "").startswith("http"):
            self.external.append(tag)

    def handle_data(self, data):
        if data.strip():
            self.cells.append(data.strip())


def test_page_shows_per_class_numbers_and_links_the_picture():
    metrics = classification_metrics([("a<b", "a<b", 3), ("a<b", "c", 1), ("c", "c", 4)])
    page = report_html(metrics, "confusion_matrix.png", "model v1")
    parser = _Collector()
    parser.feed(page)
    assert parser.images == ["per_class_f1.png", "confusion_matrix.png"]
    assert parser.external == []
    assert "a<b" in parser.cells  # the label came through escaped and parses back intact
    assert "<b" not in page.replace("<body", "").replace("<br", "")
    assert f"{metrics['accuracy']:.4f}" == "0.8750" and "0.8750" in parser.cells
    assert "1.0000" in parser.cells and "0.7500" in parser.cells  # precision of a<b, its recall
