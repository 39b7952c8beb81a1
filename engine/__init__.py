"""PoseGen generation engine: chunk planning, models, sampling, caches, merge.

No UI code lives here; the app and the session store drive this package.
"""
