DROP TABLE resource_change;
DROP TABLE istio_resource;
