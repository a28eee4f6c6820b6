"""Celery beat task: the staff digest (new conflicts and dead letters), one mail per interval."""
import logging

from celery import shared_task

from .digest import send_digest

log = logging.getLogger(__name__)


@shared_task(name="desk.send_digest", ignore_result=True)
def send_digest_task() -> int:
    count = send_digest()
    log.info("digest: %s new item(s)", count)
    return count
