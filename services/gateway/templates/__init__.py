"""``/api/v1/templates``: stored, versioned notification templates, per channel, with declared variables.

A request names one as ``content.template`` (``id``, and ``version`` to pin one); the router renders the
version's content for the channel it chooses, in the variant of ``locales`` that best matches the
recipient's locale (:func:`shared.templates.localised`). Creating or updating a template checks that
every source compiles, uses only declared variables and renders within the render limits with its
samples; updating adds a version (versions never change); deleting is soft. :class:`~.service.KnownTemplates`
is how the notification routes refuse a request naming no template.
"""
