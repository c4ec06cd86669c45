# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Every evidence kind the collection knows. Importing this module registers them all.

To add a kind (e.g. ``containers`` over the Docker API, ``postgres`` with one round trip per concern,
``http`` health probes): write ``collector_<kind>.py`` with a :class:`Collector` subclass decorated with
``@register``, import it below, and document its option block in ``modules/stack_evidence.py``. The
module's code and its existing options do not change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.module_utils import (
    collector_containers,  # noqa: F401
    collector_http,  # noqa: F401
    collector_kubernetes,  # noqa: F401
    collector_logs,  # noqa: F401
    collector_postgres,  # noqa: F401
    collector_prometheus,  # noqa: F401
    collector_redis,  # noqa: F401
)
from ansible_collections.octollm.remediation.plugins.module_utils.evidence import COLLECTORS, run_all  # noqa: F401
