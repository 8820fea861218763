"""CloudTrail sources: ``files`` (local paths), ``s3`` (a trail's bucket), ``lookup``
(the LookupEvents API).  Each reads its input into a :class:`~trailscan.store.Store`
in bounded, transactional batches and returns the coverage it achieved."""
