"""The errors a user can cause and fix. Each message says what went wrong and what to do; the
command line and the app show it as one line, and only bugs (anything else) show a traceback."""


class MosaicError(Exception):
    """A problem the user can fix; the message names the fix."""


class UsageError(MosaicError):
    """Arguments or settings that cannot work together: an unknown model spec or vocabulary, an
    option without the one it needs, an optional dependency that is not installed."""


class SourceError(MosaicError):
    """Input data that cannot be read: a source, an image, a humor dataset, an annotation or
    checkpoint file."""


class CollectionError(MosaicError):
    """A collection that is missing, unfinished, inconsistent or unsuited to the request."""


class QueryError(MosaicError):
    """A query the search service cannot answer: empty, unreadable, an unknown id or filter."""


class HubError(MosaicError):
    """A model or dataset the Hugging Face Hub cannot give, or a publish that cannot happen."""
