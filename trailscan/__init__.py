"""trailscan: why workloads on Amazon EKS get refused by AWS, from CloudTrail.

Importing the package prints nothing and configures no logging.
"""

from __future__ import annotations

__version__ = "0.1.0"
