"""The accounts OAR itself trusts (DESIGN.md, "Identity and trust")."""

#: may administer OAR and act on every job
ADMIN_USERS = ("root", "oar")
