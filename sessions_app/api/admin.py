"""Admin for REST API keys. (Filled by issue 5.)"""
