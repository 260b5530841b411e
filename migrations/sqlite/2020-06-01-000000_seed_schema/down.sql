DROP TABLE mesh_events;
DROP TABLE lb_resource;
DROP TABLE cluster;
DROP TABLE mesh;
DROP TABLE task;
DROP TABLE flow;
