"""What a Python team would build instead of Herald: Celery 5 prefork workers on Redis doing the same job.

:mod:`.app` is the Celery application the workers run; :mod:`.phase` starts them, enqueues the requests
and measures them the way the pipeline phase measures Herald.
"""
