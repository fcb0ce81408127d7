"""The worker, wired explicitly: settings in, a Faust app with every stage out.

Follow one event through the files this names, in order:

1. agents/screening.py: the ingestion topic, screened (dead letters, suppressions),
   in batches onto the identity stage's input;
2. agents/identity.py: dedup and identity resolution (streams/core/identity_stage.py),
   on to the profile partition of the event's canonical profile;
3. agents/profiles.py: the profile, its timeline and activation
   (streams/core/pipeline.py, streams/activation/runtime.py), the action commands
   sent in the record's transaction (agents/owned.py);
4. agents/api.py serves the result (the profile API, ``/metrics``), behind the web
   gate of agents/auth.py.

Nothing is registered on import: :func:`build` makes the stores, the serde and the
metrics registry from the settings it is given, and installs each stage on the app.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from agents import api, lag, screening
from agents.activation import Activation
from agents.auth import KeyCheck
from agents.context import Worker
from agents.identity import IdentityWiring
from agents.owned import Decoder
from agents.profiles import ProfileWiring
from streams.app import ActivationApp, create_app
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings
from tables.state import declare_stores

log = logging.getLogger(__name__)


def build(settings: Settings, keys: KeyCheck | None = None) -> ActivationApp:
    """A worker's app with every stage installed (``keys``: see ``create_app``)."""
    return wire(settings, create_app(settings, keys)).app


def wire(settings: Settings, app: ActivationApp) -> Worker:
    """Install every stage of the worker on ``app``; the shared parts, returned."""
    identity_states, profile_states = declare_stores(settings)
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    w = Worker(settings, app, CollectorRegistry(), serde, identity_states, profile_states)
    activation, decoder = Activation(w), Decoder(w)
    if settings.screening:
        screening.install(w)
    else:  # the internal topics drain (before an identity migration); said loudly, since
        # events.ingest is not read at all until it is on again
        log.warning("ACTIVATION_SCREENING is off: events.ingest is not screened; the "
                    "internal topics drain (docs/partitioned-identity.md, 7.1)")
    IdentityWiring(w, activation, decoder).install()
    ProfileWiring(w, activation, decoder).install()
    activation.install()
    api.install(w, activation)
    lag.install(w)
    return w
