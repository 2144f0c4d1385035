"""The OAR database: models, connection, schema creation and upgrade."""
