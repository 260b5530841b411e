DROP TABLE registered_cluster;
