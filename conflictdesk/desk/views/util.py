"""Small helpers shared by the desk's views (and, for refusals, by the API's)."""
from django.core.paginator import Paginator

from sync.actions import Blocked, Invalid, Refused, Stale, Unavailable

PAGE_SIZE = 25
# An action's refusal as an HTTP status, by its kind (never by its message).
REFUSAL_STATUS = ((Invalid, 400), (Stale, 409), (Blocked, 409), (Unavailable, 503))


def page_of(request, queryset, size: int = PAGE_SIZE):
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def query_without_page(request) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def refusal_status(refused: Refused) -> int:
    return next((status for kind, status in REFUSAL_STATUS if isinstance(refused, kind)), 409)
