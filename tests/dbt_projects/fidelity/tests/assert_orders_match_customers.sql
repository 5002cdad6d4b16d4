{{ config(meta={"dagster": {"ref": {"name": "orders"}}}) }}
select * from {{ ref('orders') }} o join {{ ref('customers') }} c on o.order_id = c.id where false
