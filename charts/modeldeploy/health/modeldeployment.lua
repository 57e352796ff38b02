-- Argo CD health check for ModelDeployment (modeldeploy.io/v1alpha1).
--
-- Install it as `resource.customizations.health.modeldeploy.io_ModelDeployment` in the
-- argocd-cm ConfigMap (docs/design-notes.md, "Health for Flux and Argo CD"). Argo CD runs it in
-- gopher-lua with the live object bound to `obj` and reads back {status, message}.
--
-- It reads what the operator writes: the phase and the kstatus conditions (Reconciling while
-- the operator is still moving toward the spec, Stalled when it needs a person). Ready alone is
-- not enough: it stays True while the old revision serves during a rollout and after a rollback.

local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function said(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

-- A status written for an older spec says nothing about this one.
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local phase = obj.status.phase
local stalled = condition("Stalled")
local degraded = condition("Degraded")
local progressing = condition("Progressing")
local reconciling = condition("Reconciling")
local ready = condition("Ready")

-- Needs a person: a rollback (analysis or abort), a missing Secret or claim, a refused write.
if (stalled ~= nil and stalled.status == "True") or (degraded ~= nil and degraded.status == "True")
    or phase == "Failed" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = said(stalled, said(degraded, said(progressing, "ModelDeployment is " .. tostring(phase))))
  return hs
end

-- Held on purpose: spec.paused, or a step that waits for `modeldeploy promote`.
if phase == "Paused" or (obj.spec ~= nil and obj.spec.paused == true)
    or (progressing ~= nil and progressing.reason == "PausedAtStep") then
  hs.status = "Suspended"
  hs.message = said(progressing, "ModelDeployment is paused")
  return hs
end

if (reconciling ~= nil and reconciling.status == "True") or phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = said(reconciling, said(progressing, said(ready, "Rollout in progress")))
  return hs
end

if phase == "Healthy" and ready ~= nil and (ready.status == "True" or ready.reason == "ScaledToZero") then
  hs.status = "Healthy"
  hs.message = said(ready, "ModelDeployment is serving")
  return hs
end

hs.status = "Progressing"
hs.message = said(ready, "Waiting for the ModelDeployment to become healthy")
return hs
