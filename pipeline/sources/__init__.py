"""Source adapters: each turns one kind of raw layout into :class:`SourceRecord` rows.

Add a source kind by writing an adapter class with ``kind`` and ``records()`` and registering
it in :data:`ADAPTERS`. The ingest stage does the rest (image validation, ids, rejects).
"""

from pipeline.sources.article_figures import ArticleFiguresAdapter
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.demo import DemoAdapter
from pipeline.sources.derm1m_release import Derm1MReleaseAdapter
from pipeline.sources.folder import ImageFolderAdapter
from pipeline.sources.forum import ForumAdapter
from pipeline.sources.ham10000 import HAM10000Adapter
from pipeline.sources.public_dataset import PublicDatasetAdapter
from pipeline.sources.textbook import TextbookAdapter
from pipeline.sources.video import VideoAdapter

ADAPTERS: dict[str, type[SourceAdapter]] = {
    cls.kind: cls for cls in (DemoAdapter, Derm1MReleaseAdapter, ImageFolderAdapter, HAM10000Adapter,
                               PublicDatasetAdapter, VideoAdapter, ArticleFiguresAdapter, ForumAdapter, TextbookAdapter)
}

__all__ = ["ADAPTERS", "SourceAdapter", "SourceRecord"]
