"""kopf operators: thin glue, observe -> flywheel.controllers (pure) -> flywheel.kube.

One reconciler per kind, all built by `operators.reconcile.register` (level-based handlers,
child watches, requeue, errors: see that module). `flywheel operator [KIND...]` runs them
(`operators.main`), with one shared start-up handler (`operators._startup`).

Adding a kind (Deployment, DriftMonitor, SelfPlayRun) takes a few lines:

1. Write the pure controller `flywheel/controllers/<kind>.py` with
   `observe_refs(resource, settings) -> list[plans.Ref]`, `validate(resource) -> <api model>`
   and `plan(resource, observed, now, settings, model=None) -> plans.Plan` (`model`: the
   resource the adapter validated, once per reconcile; None: plan validates it).
2. Add `operators/<kind>.py`:

       from flywheel.controllers import deployment
       from operators import reconcile

       CHILDREN = (reconcile.Child("apps", "v1", "deployments"),)  # owner-labelled children to watch

       def register(registry, settings=None):
           return reconcile.register(deployment, kind="Deployment", children=CHILDREN,
                                     registry=registry, settings=settings)

3. Add `"Deployment": "operators.deployment"` to `operators.main.OPERATORS`.
4. Give the operator's RBAC get/list/watch on the children, plus create/patch/delete.

Children must carry the labels of `plans.child_metadata` (owner-kind, owner-name): the child
watch finds the owner through them.
"""
