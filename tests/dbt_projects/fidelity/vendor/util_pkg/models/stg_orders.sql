-- the same model name as the root project's stg_orders
select 1 as order_id
