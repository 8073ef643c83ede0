"""A plugin whose import fails, as a plugin with a missing dependency does."""

raise ImportError("this test plugin needs a package that is not installed (on purpose)")
