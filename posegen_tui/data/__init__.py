"""Reading the session store and acting on it, off the UI thread (no Textual here)."""
