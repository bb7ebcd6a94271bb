"""A plugin whose import fails: dlrun must warn and carry on."""
raise ImportError("this plugin needs a package that is not installed")
