"""The only code that talks to the Kubernetes API (principle: one adapter per backend).

- `client`: connection (in-cluster or kubeconfig), REST paths, raw JSON calls, ApiError.
- `objects`: get / apply (create, 409 = already there, patch only when different) / delete /
  patch_status (status subresource) / patch_spec (Flywheel resources) / post_event.
- `execute`: observe(refs) -> Observed, and execute(resource, plan) which carries out a Plan.
- `watch`: a label-selected, cluster-wide watch of one resource in a thread (the operators'
  child watches).

The operators call `execute`; controllers never import this package (import-linter says so).
"""
