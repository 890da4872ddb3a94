"""Deploy the real-time WebSocket backend to Fly.io with Pulumi.

- ``infra.flytoml``: the fly.toml model, Fly's rules, render, parse, lint (no Pulumi, no stacks);
- ``infra.stack``: stack config keys -> validated settings, drift between stacks;
- ``infra.deploy``: plans per target, the ``FlyApp`` component, materialise and smoke steps;
- ``infra.local``: the local target's parts (processes, certificates, dev secrets, haproxy edge);
- ``infra.engine``: the Pulumi CLI runner behind ``make up``;
- ``infra.cli``: ``python -m infra render|lint|diff|drift``.
"""
