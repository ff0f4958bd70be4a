-- Argo CD health for the four Flywheel kinds (same logic for each; see argocd-cm.yaml).
-- Progressing until the operator has observed the current generation; then, as kstatus (Flux)
-- reads them, Stalled=True is Degraded and Reconciling=True is Progressing (a reconcile retrying
-- after an API error is Ready=False but still Progressing); then Ready decides.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then return hs end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "Operator has not observed the latest spec"
  return hs
end
if obj.status.phase == "Suspended" then
  return {status = "Suspended", message = obj.status.message or "Suspended"}
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      return {status = "Degraded", message = c.message or c.reason or ""}
    end
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Reconciling" and c.status == "True" then
      return {status = "Progressing", message = c.message or c.reason or ""}
    end
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      if c.status == "True" then return {status = "Healthy", message = c.message or ""} end
      if c.status == "False" then return {status = "Degraded", message = c.message or c.reason or ""} end
      return {status = "Progressing", message = c.message or c.reason or ""}
    end
  end
end
return hs
