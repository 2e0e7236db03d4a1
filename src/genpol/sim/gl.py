"""Pick MuJoCo's offscreen OpenGL backend before MuJoCo is imported.

MuJoCo reads MUJOCO_GL once, when `mujoco` is first imported, and PyOpenGL fixes its platform at
the same moment, so a backend that fails later cannot be swapped in-process. We therefore try
each candidate in a short child process (~0.2 s) and export the first that creates a context:
EGL first (GPU, or Mesa's llvmpipe on machines without one), then OSMesa (pure software; needs
the libosmesa6 package). Children inherit the exported MUJOCO_GL and skip the probe. A MUJOCO_GL
set by the user is always respected.
"""

from __future__ import annotations

import os
import subprocess
import sys

CANDIDATES = ("egl", "osmesa")
_PROBE = ("import mujoco\n"
          "ctx = mujoco.GLContext(16, 16)\n"
          "ctx.make_current()\n"
          "ctx.free()\n")

backend: str | None = None  # the chosen backend, None if none works (or chosen too late)
problem: str = ""           # why rendering is unavailable, for error messages and test skips
_configured = False


def _probe(candidate: str) -> str:
    """'' if `candidate` can create a context here, else the reason it cannot."""
    env = dict(os.environ, MUJOCO_GL=candidate, PYOPENGL_PLATFORM=candidate)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{candidate}: {exc}"
    if proc.returncode == 0:
        return ""
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return f"{candidate}: {last}"


def configure() -> str | None:
    """Choose and export MUJOCO_GL (once per process); returns the backend or None."""
    global backend, problem, _configured
    if _configured:
        return backend
    _configured = True
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen in ("disable", "disabled", "off", "false", "0"):
        backend, problem = None, f"MUJOCO_GL={chosen} disables rendering"
        return None
    if chosen:
        backend = chosen
        if chosen == "osmesa":  # PyOpenGL must agree with MuJoCo's context type
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
        return backend
    if "mujoco" in sys.modules:
        # Too late to choose: mujoco took its default (GLFW, which needs a display). Let
        # rendering try it, and say what to do if it fails.
        backend = "glfw"
        problem = ("mujoco was imported before genpol.sim chose a GL backend, so it uses GLFW; "
                   "set MUJOCO_GL=egl or MUJOCO_GL=osmesa, or import genpol.sim.scene first")
        return backend
    reasons = []
    for candidate in CANDIDATES:
        reason = _probe(candidate)
        if not reason:
            os.environ["MUJOCO_GL"] = candidate
            if candidate == "osmesa":
                os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
            backend = candidate
            return backend
        reasons.append(reason)
    # Nothing renders: keep physics usable and say why rendering is not. "disable" stops
    # mujoco from importing an OpenGL platform at all.
    os.environ["MUJOCO_GL"] = "disable"
    problem = ("no offscreen OpenGL backend works here (" + "; ".join(reasons) +
               "); install Mesa's EGL (libegl1) or OSMesa (libosmesa6)")
    return None


def release_current() -> None:
    """Unbind this thread's EGL context, so that another thread may bind it next.

    An EGL context may be current in one thread at a time, and MuJoCo's renderer leaves its
    context bound after rendering; without this, a renderer used on one thread could not be
    closed (or used) on another. OSMesa does not bind contexts to threads: nothing to do there.
    """
    if backend != "egl":
        return
    from mujoco import egl
    from OpenGL import EGL

    if egl.EGL_DISPLAY is not None:
        EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                           EGL.EGL_NO_CONTEXT)
