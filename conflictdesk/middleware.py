"""Request-wide guards that run before any view or parser."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse


class BodySizeLimitMiddleware:
    """Refuse (413) a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads it.

    Django checks that limit only when ``request.body`` is read; DRF's parsers
    read the stream and skip it. A body without Content-Length is read as empty
    by Django's WSGI request, so the header is the whole story here.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length", status=400, content_type="text/plain")
        if limit is not None and length > limit:
            return HttpResponse("Request body too large", status=413, content_type="text/plain")
        return self.get_response(request)
