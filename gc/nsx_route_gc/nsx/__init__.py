"""The NSX adapter: the Policy API over ``requests`` (transport, rate limit, listing, search,
deletion and its confirmation). May import the domain and the cross-cutting modules, never a run.
"""
