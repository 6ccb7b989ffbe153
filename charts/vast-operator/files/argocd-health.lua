hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.observedGeneration ~= obj.metadata.generation then return hs end
if obj.spec.suspend then return {status = "Suspended", message = "polling is suspended"} end
local cond = {}
for _, c in ipairs(obj.status.conditions or {}) do cond[c.type] = c end
if cond.Stalled ~= nil and cond.Stalled.status == "True" then
  return {status = "Degraded", message = cond.Stalled.message}
end
if cond.Reconciling ~= nil and cond.Reconciling.status == "True" then
  return {status = "Progressing", message = cond.Reconciling.message}
end
if cond.Ready ~= nil and cond.Ready.status == "True" then
  return {status = "Healthy", message = cond.Ready.message}
end
if cond.Ready ~= nil then return {status = "Degraded", message = cond.Ready.message} end
return hs
