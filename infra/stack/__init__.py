"""Stack configuration: ``Pulumi.<stack>.yaml`` keys -> validated settings, and drift between
stacks.

Shared by the Pulumi program and the CLI, so a stack renders the same fly.toml with and without the
engine. Imports the fly.toml domain, never Pulumi or deploy code.
"""
