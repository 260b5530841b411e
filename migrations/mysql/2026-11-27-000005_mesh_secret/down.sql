DROP TABLE mesh_secret;
